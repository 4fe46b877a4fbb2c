"""The stacks: each composes constructs, grants permissions and emits outputs; nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.deploy.endpoint_deployer import EndpointDeployer
from infra.deploy.settings import EndpointSettings
from infra.foundation import EncryptionKey, JobNetwork, PlatformBuckets, add_alarm_topic
from infra.images import ContainerImages
from infra.names import PlatformNames
from infra.pipeline.finetune_pipeline import FinetunePipeline
from infra.pipeline.job_role import JobRole
from infra.pipeline.settings import PipelineSettings
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


class PlatformStack(Stack):
    """A stack of this platform: in the config's account and region, described as ``<project>: ...``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: PlatformSettings, description: str
    ) -> None:
        super().__init__(scope, construct_id, env=settings.env, description=f"{settings.name}: {description}")
        self.platform_names = settings.names

    def bucket_by_name(self, kind: str) -> s3.IBucket:
        """One of the foundation's buckets (``data``, ``artifacts``), imported by name, so policies read
        arn:...:s3:::<name>/* rather than a cross-stack export."""
        return s3.Bucket.from_bucket_name(self, kind.title(), self.platform_names.bucket(kind))


class FoundationStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: PlatformSettings) -> None:
        super().__init__(
            scope,
            construct_id,
            settings=settings,
            description="KMS key, buckets, private network, alarm topic",
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
        self.alarm_topic = add_alarm_topic(
            self,
            display_name=f"{settings.name} failures",
            key=self.key,
            notification_email=settings.notification_email,
        )
        CfnOutput(
            self,
            "DataBucketName",
            value=self.data.bucket_name,
            description="Upload datasets and base models here",
        )
        CfnOutput(self, "ArtifactsBucketName", value=self.artifacts.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)


class ImagesStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: PlatformSettings) -> None:
        super().__init__(
            scope,
            construct_id,
            settings=settings,
            description="training and inference images from containers/",
        )
        self.images = ContainerImages(
            self, "Images", repo_root=settings.repo_root, parameter_prefix=f"/{settings.name}"
        )
        CfnOutput(self, "TrainingImageUri", value=self.images.training.image_uri)
        CfnOutput(self, "InferenceImageUri", value=self.images.inference.image_uri)


class TrackingStack(PlatformStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: PlatformSettings, foundation: FoundationStack
    ) -> None:
        super().__init__(
            scope, construct_id, settings=settings, description="SageMaker managed MLflow tracking server"
        )
        self.tracking = MlflowTracking(
            self,
            "Mlflow",
            name=f"{settings.name}-mlflow",
            artifacts=self.bucket_by_name("artifacts"),
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


class PipelineStack(PlatformStack):
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
            settings=settings,
            description="the fine-tune pipeline, its roles and model package group",
        )
        container_images = images.images
        mlflow_arn = tracking.tracking.arn if tracking else None
        data = self.bucket_by_name("data")
        artifacts = self.bucket_by_name("artifacts")
        self.job_role = JobRole(
            self,
            "Jobs",
            data=data,
            artifacts=artifacts,
            key=foundation.key,
            images=[container_images.training, container_images.inference],
            mlflow_arn=mlflow_arn,
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
            mlflow_arn=mlflow_arn,
        )
        CfnOutput(self, "PipelineName", value=settings.pipeline.pipeline_name)
        CfnOutput(self, "ModelPackageGroupName", value=settings.pipeline.model_package_group)
        CfnOutput(self, "JobRoleArn", value=self.job_role.role_arn)


class DeployStack(PlatformStack):
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
            settings=settings,
            description="approved model packages -> inf2 endpoint (blue/green)",
        )
        self.deployer = EndpointDeployer(
            self,
            "Deployer",
            settings=settings.endpoint,
            names=settings.names,
            artifacts=self.bucket_by_name("artifacts"),
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
