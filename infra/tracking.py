"""A SageMaker managed MLflow tracking server on the artifacts bucket (``mlflow/`` prefix), with
automatic registration of MLflow models into the SageMaker Model Registry. It is billed while it
exists, so ``infra.mlflow: false`` leaves it out."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.nag import acknowledge
from infra.names import PlatformNames

MLFLOW_PREFIX = "mlflow"


class MlflowTracking(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        artifacts: s3.IBucket,
        key: kms.IKey,
        size: str,
        names: PlatformNames,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="The managed MLflow server: its artifact store and model registration",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="ArtifactStore",
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[artifacts.arn_for_objects(f"{MLFLOW_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    sid="ListArtifactStore",
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[artifacts.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="UseKey",
                    actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    resources=[key.key_arn],
                ),
                # Automatic model registration creates groups and versions named after MLflow models.
                iam.PolicyStatement(
                    sid="RegisterModels",
                    actions=[
                        "sagemaker:AddTags",
                        "sagemaker:CreateModelPackageGroup",
                        "sagemaker:CreateModelPackage",
                        "sagemaker:DescribeModelPackageGroup",
                        "sagemaker:UpdateModelPackage",
                    ],
                    resources=[
                        Stack.of(self).format_arn(
                            service="sagemaker", resource="model-package-group", resource_name="*"
                        ),
                        Stack.of(self).format_arn(
                            service="sagemaker", resource="model-package", resource_name="*"
                        ),
                    ],
                ),
            ],
            description="The managed MLflow server: its artifact store and automatic model registration",
        )
        policy = self.policy.node.default_child
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{names.objects_text('artifacts', MLFLOW_PREFIX + '/')}]",
            "MLflow writes run artifacts under mlflow/ of the artifacts bucket; their keys are per run",
        )
        for resource in ("model-package-group/*", "model-package/*"):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{names.arn_text('sagemaker', resource)}]",
                "automatic model registration creates groups and versions named after MLflow models",
            )
        self.server = sagemaker.CfnMlflowTrackingServer(
            self,
            "Server",
            tracking_server_name=name,
            role_arn=self.role.role_arn,
            artifact_store_uri=f"s3://{artifacts.bucket_name}/{MLFLOW_PREFIX}",
            automatic_model_registration=True,
            tracking_server_size=size,
        )
        self.server.node.add_dependency(self.policy)
        self.arn = self.server.attr_tracking_server_arn
