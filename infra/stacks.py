"""The stacks: each composes constructs, grants permissions and emits outputs; nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.deploy.endpoint_deployer import EndpointDeployer
from infra.deploy.settings import EndpointSettings
from infra.foundation import EncryptionKey, JobNetwork, PlatformBuckets
from infra.images import ContainerImages
from infra.names import PlatformNames
from infra.pipeline import FinetunePipeline, JobRole, PipelineSettings
from infra.tracking import MlflowTracking


@dataclass(frozen=True)
class PlatformSettings:
    """Everything the stacks need, read from the project config once in app.py."""

    name: str
    names: PlatformNames
    env: Environment
    availability_zones: list[str]
    vpc_cidr: str
    log_retention_days: int
    notification_email: str | None
    mlflow: bool
    mlflow_size: str
    repo_root: Path
    pipeline: PipelineSettings
    endpoint: EndpointSettings


class FoundationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: PlatformSettings) -> None:
        super().__init__(
            scope,
            construct_id,
            env=settings.env,
            description=f"{settings.name}: KMS key, buckets, private network, alarm topic",
        )
        self.key = EncryptionKey(self, "Encryption", alias=f"alias/{settings.name}").key
        buckets = PlatformBuckets(self, "Buckets", key=self.key, names=settings.names)
        self.data, self.artifacts = buckets.data, buckets.artifacts
        network = JobNetwork(
            self,
            "Network",
            cidr=settings.vpc_cidr,
            availability_zones=settings.availability_zones,
            key=self.key,
            log_retention_days=settings.log_retention_days,
        )
        self.vpc, self.security_group = network.vpc, network.security_group
        self.alarm_topic = sns.Topic(
            self, "Alarms", display_name=f"{settings.name} failures", master_key=self.key, enforce_ssl=True
        )
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        if settings.notification_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(settings.notification_email))
        CfnOutput(
            self,
            "DataBucketName",
            value=self.data.bucket_name,
            description="Upload datasets and base models here",
        )
        CfnOutput(self, "ArtifactsBucketName", value=self.artifacts.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)


class ImagesStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: PlatformSettings) -> None:
        super().__init__(
            scope,
            construct_id,
            env=settings.env,
            description=f"{settings.name}: training and inference images from containers/",
        )
        self.images = ContainerImages(
            self, "Images", repo_root=settings.repo_root, parameter_prefix=f"/{settings.name}"
        )
        CfnOutput(self, "TrainingImageUri", value=self.images.training.image_uri)
        CfnOutput(self, "InferenceImageUri", value=self.images.inference.image_uri)


class TrackingStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: PlatformSettings, foundation: FoundationStack
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=settings.env,
            description=f"{settings.name}: SageMaker managed MLflow tracking server",
        )
        artifacts = s3.Bucket.from_bucket_name(self, "Artifacts", settings.names.bucket("artifacts"))
        self.tracking = MlflowTracking(
            self,
            "Mlflow",
            name=f"{settings.name}-mlflow",
            artifacts=artifacts,
            key=foundation.key,
            size=settings.mlflow_size,
            names=settings.names,
        )
        CfnOutput(
            self,
            "MlflowTrackingServerArn",
            value=self.tracking.arn,
            description="MLFLOW_TRACKING_URI for the sagemaker-mlflow plugin",
        )


class PipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PlatformSettings,
        foundation: FoundationStack,
        images: ImagesStack,
        tracking: TrackingStack | None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=settings.env,
            description=f"{settings.name}: the fine-tune pipeline, its roles and model package group",
        )
        container_images = images.images
        # By name, so policies read arn:...:s3:::<name>/* rather than a cross-stack export.
        data = s3.Bucket.from_bucket_name(self, "Data", settings.names.bucket("data"))
        artifacts = s3.Bucket.from_bucket_name(self, "Artifacts", settings.names.bucket("artifacts"))
        self.job_role = JobRole(
            self,
            "Jobs",
            data=data,
            artifacts=artifacts,
            key=foundation.key,
            images=[container_images.training, container_images.inference],
            mlflow_arn=tracking.tracking.arn if tracking else None,
            names=settings.names,
        ).role
        self.pipeline = FinetunePipeline(
            self,
            "Finetune",
            settings=settings.pipeline,
            job_role=self.job_role,
            data=data,
            artifacts=artifacts,
            key=foundation.key,
            vpc=foundation.vpc,
            names=settings.names,
            security_group=foundation.security_group,
            training_image=container_images.training.image_uri,
            inference_image=container_images.inference.image_uri,
            alarm_topic=foundation.alarm_topic,
            mlflow_arn=tracking.tracking.arn if tracking else None,
        )
        CfnOutput(self, "PipelineName", value=settings.pipeline.pipeline_name)
        CfnOutput(self, "ModelPackageGroupName", value=settings.pipeline.model_package_group)
        CfnOutput(self, "JobRoleArn", value=self.job_role.role_arn)


class DeployStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PlatformSettings,
        foundation: FoundationStack,
        images: ImagesStack,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=settings.env,
            description=f"{settings.name}: approved model packages -> inf2 endpoint (blue/green)",
        )
        artifacts = s3.Bucket.from_bucket_name(self, "Artifacts", settings.names.bucket("artifacts"))
        self.deployer = EndpointDeployer(
            self,
            "Deployer",
            settings=settings.endpoint,
            names=settings.names,
            artifacts=artifacts,
            key=foundation.key,
            vpc=foundation.vpc,
            security_group=foundation.security_group,
            inference_repository=images.images.inference.repository,
            alarm_topic=foundation.alarm_topic,
        )
        CfnOutput(self, "EndpointName", value=settings.endpoint.endpoint_name)
        CfnOutput(self, "DeployerFunctionName", value=self.deployer.function.function_name)
        CfnOutput(self, "DashboardName", value=f"{settings.endpoint.endpoint_name}-overview")


def build_platform(scope: Construct, settings: PlatformSettings) -> list[Stack]:
    name = settings.name
    foundation = FoundationStack(scope, f"{name}-foundation", settings=settings)
    images = ImagesStack(scope, f"{name}-images", settings=settings)
    tracking = (
        TrackingStack(scope, f"{name}-tracking", settings=settings, foundation=foundation)
        if settings.mlflow
        else None
    )
    pipeline = PipelineStack(
        scope, f"{name}-pipeline", settings=settings, foundation=foundation, images=images, tracking=tracking
    )
    deploy = DeployStack(scope, f"{name}-deploy", settings=settings, foundation=foundation, images=images)
    # Imported by name: the order CloudFormation needs is declared, not inferred from tokens.
    for stack in (pipeline, deploy, tracking):
        if stack is not None:
            stack.add_stack_dependency(foundation)
    # The image URIs are plain strings in the pipeline definition: deploy the images first.
    pipeline.add_stack_dependency(images)
    deploy.add_stack_dependency(images)
    return [s for s in (foundation, images, tracking, pipeline, deploy) if s is not None]
