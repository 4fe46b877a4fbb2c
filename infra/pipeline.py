"""The SageMaker Pipeline from ``pipelines/``, its roles, its model package group, an optional schedule
and a failure notification.

Two roles, each limited to what it does:

* the **job role** runs inside the containers: read the data bucket, read and write the artifacts
  bucket, use the key, pull the two images, write its logs and metrics, manage the network
  interfaces of VPC jobs, and log to the MLflow server;
* the **pipeline role** is what SageMaker Pipelines assumes to orchestrate: create, describe and stop
  this project's processing and training jobs, register model packages in this group, read the
  property files, and pass the job role to SageMaker, nothing else.

The definition JSON is generated at synth time by ``pipelines/definition.py`` (offline, no AWS
calls) and its ``${Name}`` placeholders are filled by ``Fn::Sub`` at deploy time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.nag import acknowledge
from infra.names import PlatformNames
from infra.sagemaker_hosting import acknowledge_container_wildcards, container_statements
from pipelines.definition.placeholders import MLFLOW_TRACKING, placeholder_names, used_placeholders


@dataclass(frozen=True)
class PipelineSettings:
    pipeline_name: str
    model_package_group: str
    definition_json: str  # from pipelines.definition.pipeline_definition, placeholders included
    subnet_count: int
    source_commit: str
    schedule: str | None


def objects(bucket: s3.IBucket, prefix: str = "") -> str:
    return bucket.arn_for_objects(f"{prefix}*")


class JobRole(Construct):
    """Managed (not inline) policies with explicit actions: the HIPAA and NIST packs forbid inline ones,
    and CDK's grant helpers would add wildcard actions (s3:GetObject*, kms:ReEncrypt*) we do not need."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: s3.IBucket,
        artifacts: s3.IBucket,
        key: kms.IKey,
        images: list[ecr_assets.DockerImageAsset],
        mlflow_arn: str | None,
        names: PlatformNames,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Runs inside the pipeline's processing and training containers",
        )
        statements = [
            iam.PolicyStatement(sid="ReadData", actions=["s3:GetObject"], resources=[objects(data)]),
            iam.PolicyStatement(
                sid="ReadWriteArtifacts",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[objects(artifacts)],
            ),
            iam.PolicyStatement(
                sid="ListBuckets",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[data.bucket_arn, artifacts.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="UseKey",
                actions=[
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey",
                    "kms:CreateGrant",
                ],
                resources=[key.key_arn],
            ),
            iam.PolicyStatement(
                sid="PullImages",
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=sorted({image.repository.repository_arn for image in images}),
            ),
            *container_statements(stack, "/aws/sagemaker/*"),
        ]
        if mlflow_arn:
            statements.append(
                iam.PolicyStatement(
                    sid="MlflowTracking", actions=MLFLOW_LOGGING_ACTIONS, resources=[mlflow_arn]
                )
            )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            statements=statements,
            description="What the pipeline's containers do",
        )
        policy = self.policy.node.default_child
        for kind in ("data", "artifacts"):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{names.objects_text(kind)}]",
                f"Objects of the project's {kind} bucket: datasets, models and job outputs have run-specific keys",
            )
        acknowledge_container_wildcards(policy, names, "/aws/sagemaker/*")


# The MLflow REST calls the training job makes through the sagemaker-mlflow plugin.
MLFLOW_LOGGING_ACTIONS = [
    "sagemaker-mlflow:AccessUI",
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:GetExperiment",
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:SearchExperiments",
    "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:UpdateRun",
    "sagemaker-mlflow:GetRun",
    "sagemaker-mlflow:LogBatch",
    "sagemaker-mlflow:LogMetric",
    "sagemaker-mlflow:LogParam",
    "sagemaker-mlflow:SetTag",
]


class FinetunePipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PipelineSettings,
        job_role: iam.IRole,
        data: s3.IBucket,
        artifacts: s3.IBucket,
        key: kms.IKey,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        training_image: str,
        inference_image: str,
        alarm_topic: sns.ITopic,
        names: PlatformNames,
        mlflow_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=settings.model_package_group,
            model_package_group_description="Fine-tuned LLMs compiled for Inferentia 2 (approve to deploy)",
        )
        arn = _ArnMaker(stack)
        self.role = iam.Role(
            self,
            "PipelineRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Assumed by SageMaker Pipelines to run the fine-tune pipeline's steps",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "PipelinePolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="RunJobs",
                    actions=[
                        "sagemaker:CreateProcessingJob",
                        "sagemaker:DescribeProcessingJob",
                        "sagemaker:StopProcessingJob",
                        "sagemaker:CreateTrainingJob",
                        "sagemaker:DescribeTrainingJob",
                        "sagemaker:StopTrainingJob",
                        "sagemaker:AddTags",
                        "sagemaker:ListTags",
                    ],
                    resources=[arn.sagemaker("processing-job/*"), arn.sagemaker("training-job/*")],
                ),
                iam.PolicyStatement(
                    sid="RegisterModels",
                    actions=[
                        "sagemaker:CreateModelPackage",
                        "sagemaker:DescribeModelPackage",
                        "sagemaker:AddTags",
                    ],
                    resources=[
                        arn.sagemaker(f"model-package/{settings.model_package_group}/*"),
                        arn.sagemaker(f"model-package-group/{settings.model_package_group}"),
                    ],
                ),
                iam.PolicyStatement(
                    sid="PassJobRole",
                    actions=["iam:PassRole"],
                    resources=[job_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                # Property files (evaluation.json, ...) are read by the service with this role.
                iam.PolicyStatement(
                    sid="ReadPropertyFiles", actions=["s3:GetObject"], resources=[objects(artifacts)]
                ),
                iam.PolicyStatement(
                    sid="ListArtifacts", actions=["s3:ListBucket"], resources=[artifacts.bucket_arn]
                ),
                iam.PolicyStatement(
                    sid="DecryptArtifacts",
                    actions=["kms:Decrypt", "kms:DescribeKey"],
                    resources=[key.key_arn],
                ),
            ],
            description="What SageMaker Pipelines does on behalf of the fine-tune pipeline",
        )
        policy = self.policy.node.default_child
        for resource, why in (
            ("processing-job/*", "job names are generated by SageMaker Pipelines per execution"),
            ("training-job/*", "job names are generated by SageMaker Pipelines per execution"),
            (
                f"model-package/{settings.model_package_group}/*",
                "versions of this group are numbered by the registry",
            ),
        ):
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{names.arn_text('sagemaker', resource)}]", why)
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{names.objects_text('artifacts')}]",
            "property files live under per-execution prefixes of the artifacts bucket",
        )

        values = {
            "TrainingImageUri": training_image,
            "InferenceImageUri": inference_image,
            "DataBucket": data.bucket_name,
            "ArtifactsBucket": artifacts.bucket_name,
            "KmsKeyArn": key.key_arn,
            "JobRoleName": job_role.role_name,
            "JobSecurityGroupId": security_group.security_group_id,
            "SourceCommit": settings.source_commit,
        }
        subnets = vpc.isolated_subnets
        for i, name in enumerate(f"PrivateSubnet{n}" for n in range(1, settings.subnet_count + 1)):
            values[name] = subnets[i].subnet_id
        if mlflow_arn is not None:
            values[MLFLOW_TRACKING] = mlflow_arn
        expected = set(placeholder_names(settings.subnet_count, mlflow=mlflow_arn is not None))
        used = used_placeholders(settings.definition_json) - {"AWS::Partition", "AWS::AccountId"}
        if used - set(values) or set(values) - expected:
            raise ValueError(
                f"pipeline placeholders and stack values disagree: unfilled {sorted(used - set(values))}, "
                f"unknown {sorted(set(values) - expected)}"
            )
        # Validated here so a broken definition fails synth, not the deployment.
        json.loads(settings.definition_json)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=settings.pipeline_name,
            role_arn=self.role.role_arn,
            pipeline_display_name=settings.pipeline_name,
            pipeline_description="LoRA fine-tune on Trainium, quality gate, Neuron compile for Inferentia 2, register",
            # A raw dict: the typed PipelineDefinitionProperty renders lower-case keys CloudFormation rejects.
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(settings.definition_json, values)},
        )
        self.pipeline.node.add_dependency(self.group)
        self.pipeline.node.add_dependency(self.policy)
        self.arn = arn.sagemaker(f"pipeline/{settings.pipeline_name}")

        # A failed execution notifies the alarm topic.
        events.Rule(
            self,
            "OnFailure",
            description=f"{settings.pipeline_name} execution failed",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Building Pipeline Execution Status Change"],
                detail={"currentPipelineExecutionStatus": ["Failed"], "pipelineArn": [self.arn]},
            ),
            targets=[targets.SnsTopic(alarm_topic)],
        )
        if settings.schedule:
            start_role = iam.Role(
                self,
                "ScheduleRole",
                assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                description="Starts the fine-tune pipeline on its schedule",
            )
            iam.ManagedPolicy(
                self,
                "SchedulePolicy",
                roles=[start_role],
                description="Start this pipeline",
                statements=[
                    iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[self.arn])
                ],
            )
            events.CfnRule(
                self,
                "Schedule",
                schedule_expression=settings.schedule,
                description=f"Start {settings.pipeline_name} on a schedule",
                targets=[
                    events.CfnRule.TargetProperty(id="pipeline", arn=self.arn, role_arn=start_role.role_arn)
                ],
            )


class _ArnMaker:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def sagemaker(self, resource_path: str) -> str:
        resource, _, name = resource_path.partition("/")
        return self.stack.format_arn(service="sagemaker", resource=resource, resource_name=name)
