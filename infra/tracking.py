"""A SageMaker managed MLflow tracking server on the artifacts bucket (``mlflow/`` prefix), with
automatic registration of MLflow models into the SageMaker Model Registry. It is billed while it
exists, so ``infra.mlflow: false`` leaves it out."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.nag import acknowledge
from infra.names import PlatformNames
from infra.roles import list_buckets, role_with_policy, sagemaker_arn, use_key

MLFLOW_PREFIX = "mlflow"
# Automatic model registration creates these, named after the MLflow models.
REGISTRY_RESOURCES = ("model-package-group", "model-package")


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
        self.role, self.policy = role_with_policy(
            self,
            "Role",
            "Policy",
            service="sagemaker.amazonaws.com",
            role_description="The managed MLflow server: its artifact store and model registration",
            policy_description="The managed MLflow server: its artifact store and automatic model registration",
            statements=[
                iam.PolicyStatement(
                    sid="ArtifactStore",
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[artifacts.arn_for_objects(f"{MLFLOW_PREFIX}/*")],
                ),
                list_buckets("ListArtifactStore", artifacts),
                use_key(key, create_grant=False),
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
                    resources=[sagemaker_arn(self, f"{r}/*") for r in REGISTRY_RESOURCES],
                ),
            ],
        )
        policy = self.policy.node.default_child
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{names.objects_text('artifacts', MLFLOW_PREFIX + '/')}]",
            "MLflow writes run artifacts under mlflow/ of the artifacts bucket; their keys are per run",
        )
        for resource in REGISTRY_RESOURCES:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{names.arn_text('sagemaker', resource + '/*')}]",
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
