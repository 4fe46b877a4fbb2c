"""The role the pipeline's processing and training containers run with (the jobs' execution role)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge
from infra.names import PlatformNames
from infra.roles import list_buckets, role_with_policy, use_key
from infra.sagemaker_hosting import acknowledge_container_wildcards, container_statements, pull_images

LOG_GROUPS = "/aws/sagemaker/*"
# The MLflow REST calls the training job makes through the sagemaker-mlflow plugin (training/metrics.py;
# infra/iam_calls.py has one row per call). Not sagemaker-mlflow:AccessUI: that is the MLflow UI, and it
# takes no resource-level permission, so granted on the server's ARN it allowed nothing
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemakerwithmlflow.html).
MLFLOW_LOGGING_ACTIONS = [
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


class JobRole(Construct):
    """Read the data bucket, read and write the artifacts bucket, use the key, pull the two images, write
    logs and metrics, manage the network interfaces of VPC jobs, and (``mlflow_arn``) log to MLflow."""

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
        statements = [
            iam.PolicyStatement(
                sid="ReadData", actions=["s3:GetObject"], resources=[data.arn_for_objects("*")]
            ),
            iam.PolicyStatement(
                sid="ReadWriteArtifacts",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[artifacts.arn_for_objects("*")],
            ),
            list_buckets("ListBuckets", data, artifacts),
            use_key(key, create_grant=True),
            pull_images("PullImages", sorted({image.repository.repository_arn for image in images})),
            *container_statements(Stack.of(self), LOG_GROUPS),
        ]
        if mlflow_arn:
            statements.append(
                iam.PolicyStatement(
                    sid="MlflowTracking", actions=MLFLOW_LOGGING_ACTIONS, resources=[mlflow_arn]
                )
            )
        self.role, self.policy = role_with_policy(
            self,
            "Role",
            "Policy",
            service="sagemaker.amazonaws.com",
            role_description="Runs inside the pipeline's processing and training containers",
            policy_description="What the pipeline's containers do",
            statements=statements,
        )
        policy = self.policy.node.default_child
        for kind in ("data", "artifacts"):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{names.objects_text(kind)}]",
                f"Objects of the project's {kind} bucket: datasets, models and job outputs have run-specific keys",
            )
        acknowledge_container_wildcards(policy, names, LOG_GROUPS)
