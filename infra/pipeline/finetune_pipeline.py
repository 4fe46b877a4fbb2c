"""The fine-tune pipeline construct: model package group, pipeline role, the pipeline, its rules."""

from __future__ import annotations

from aws_cdk import Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.names import PlatformNames
from infra.pipeline.definition import checked_definition, deploy_time_values
from infra.pipeline.pipeline_role import add_pipeline_role
from infra.pipeline.rules import add_failure_notification, add_schedule
from infra.pipeline.settings import PipelineSettings
from infra.roles import sagemaker_arn


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
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=settings.model_package_group,
            model_package_group_description="Fine-tuned LLMs compiled for Inferentia 2 (approve to deploy)",
        )
        self.role, self.policy = add_pipeline_role(
            self, settings=settings, job_role=job_role, artifacts=artifacts, key=key, names=names
        )
        values = deploy_time_values(
            settings,
            training_image=training_image,
            inference_image=inference_image,
            data=data,
            artifacts=artifacts,
            key=key,
            job_role=job_role,
            vpc=vpc,
            security_group=security_group,
            mlflow_arn=mlflow_arn,
        )
        definition = checked_definition(settings, values, mlflow=mlflow_arn is not None)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=settings.pipeline_name,
            role_arn=self.role.role_arn,
            pipeline_display_name=settings.pipeline_name,
            pipeline_description="LoRA fine-tune on Trainium, quality gate, Neuron compile for Inferentia 2, register",
            # A raw dict: the typed PipelineDefinitionProperty renders lower-case keys CloudFormation rejects.
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(definition, values)},
        )
        self.pipeline.node.add_dependency(self.group)
        self.pipeline.node.add_dependency(self.policy)
        self.arn = sagemaker_arn(self, f"pipeline/{settings.pipeline_name}")
        add_failure_notification(
            self, pipeline_name=settings.pipeline_name, pipeline_arn=self.arn, alarm_topic=alarm_topic
        )
        if settings.schedule:
            add_schedule(
                self, schedule=settings.schedule, pipeline_name=settings.pipeline_name, pipeline_arn=self.arn
            )
