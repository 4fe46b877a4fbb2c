"""The CDK constructs and stacks that ``app.py`` composes.

One construct or component per unit: ``foundation`` (key, buckets, network, alarm topic), ``images``,
``tracking`` (MLflow), ``pipeline/`` (the fine-tune pipeline and its roles) and ``deploy/`` (approval-driven
endpoint deployment, its Lambda's code in ``deploy/runtime/``). ``stacks`` wires them; ``roles`` and
``sagemaker_hosting`` hold the IAM pieces several of them share; ``nag`` the cdk-nag security gates;
``names`` the resource names derived from the config.
"""
