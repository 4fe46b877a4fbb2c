"""The fine-tune pipeline component: the SageMaker Pipeline from ``pipelines/definition/``, its two roles,
its model package group, an optional schedule and a failure notification. One module per part:

* ``job_role``: the **job role** runs inside the containers: read the data bucket, read and write the
  artifacts bucket, use the key, pull the two images, write its logs and metrics, manage the network
  interfaces of VPC jobs, and log to the MLflow server;
* ``pipeline_role``: the **pipeline role** is what SageMaker Pipelines assumes to orchestrate: create,
  describe and stop this project's processing and training jobs, register model packages in this
  group, read the property files, and pass the job role to SageMaker, nothing else;
* ``definition``: the deploy-time values of the definition's ``${Name}`` placeholders, checked against
  the placeholders the definition uses;
* ``rules``: the failure notification and the optional schedule;
* ``finetune_pipeline``: the construct that composes them.

The definition JSON is generated at synth time by ``pipelines/definition/builder.py`` (offline, no AWS
calls) and its placeholders are filled by ``Fn::Sub`` at deploy time.
"""
