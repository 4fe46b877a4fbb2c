"""Approval-driven deployment: an approved model package becomes the inf2 endpoint.

An EventBridge rule matches "SageMaker Model Package State Change" events of this project's group
with status Approved, and invokes the deployer Lambda (``runtime/deployer.py``, beside this file).
The endpoint itself is created by that Lambda at approval time (it does not exist at deploy time);
this construct provides what it needs: the endpoint's execution role, the two rollback alarms
(5XX errors, model latency) the blue/green canary watches, a dead-letter queue, and a dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge
from infra.names import PlatformNames
from infra.sagemaker_hosting import acknowledge_container_wildcards, container_statements

RUNTIME = Path(__file__).with_name("runtime")
CAPTURE_PREFIX = "data-capture"
VARIANT = "AllTraffic"


@dataclass(frozen=True)
class EndpointSettings:
    endpoint_name: str
    model_package_group: str
    pipeline_name: str
    instance_type: str
    initial_instance_count: int
    max_instance_count: int
    invocations_per_instance: int
    canary_percent: int
    canary_wait_seconds: int
    data_capture_percent: int
    latency_alarm_ms: int
    log_retention: logs.RetentionDays


class EndpointDeployer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        names: PlatformNames,
        artifacts: s3.IBucket,
        key: kms.IKey,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        inference_repository: ecr.IRepository,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        s = settings
        endpoint_arn = stack.format_arn(
            service="sagemaker", resource="endpoint", resource_name=s.endpoint_name
        )

        # ---- the endpoint's own role (SageMaker assumes it to host the model) ------------------------
        self.endpoint_role = iam.Role(
            self,
            "EndpointRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Hosts {s.endpoint_name}: model data, image, capture, logs",
        )
        endpoint_policy = iam.ManagedPolicy(
            self,
            "EndpointPolicy",
            roles=[self.endpoint_role],
            statements=[
                iam.PolicyStatement(
                    sid="ModelData", actions=["s3:GetObject"], resources=[artifacts.arn_for_objects("*")]
                ),
                iam.PolicyStatement(
                    sid="DataCapture",
                    actions=["s3:PutObject"],
                    resources=[artifacts.arn_for_objects(f"{CAPTURE_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    sid="ListArtifacts",
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[artifacts.bucket_arn],
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
                    sid="PullImage",
                    actions=[
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchCheckLayerAvailability",
                    ],
                    resources=[inference_repository.repository_arn],
                ),
                *container_statements(stack, "/aws/sagemaker/Endpoints/*"),
            ],
            description=f"What the {s.endpoint_name} endpoint's hosting does",
        )
        policy = endpoint_policy.node.default_child
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{names.objects_text('artifacts')}]",
            "Model artifacts live under per-execution prefixes of the artifacts bucket",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{names.objects_text('artifacts', CAPTURE_PREFIX + '/')}]",
            "Data capture writes one object per captured batch under data-capture/",
        )
        acknowledge_container_wildcards(policy, names, "/aws/sagemaker/Endpoints/*")

        # ---- rollback alarms and the dashboard ----------------------------------------------------------
        dims = {"EndpointName": s.endpoint_name, "VariantName": VARIANT}
        errors = cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name="Invocation5XXErrors",
            dimensions_map=dims,
            statistic="Sum",
            period=Duration.minutes(1),
        )
        latency = cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name="ModelLatency",
            dimensions_map=dims,
            statistic="p90",
            period=Duration.minutes(1),
        )
        self.error_alarm = cloudwatch.Alarm(
            self,
            "Errors",
            alarm_name=f"{s.endpoint_name}-5xx",
            metric=errors,
            threshold=1,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            alarm_description="5XX errors from the endpoint: a blue/green rollout rolls back on this",
        )
        self.latency_alarm = cloudwatch.Alarm(
            self,
            "Latency",
            alarm_name=f"{s.endpoint_name}-latency",
            metric=latency,
            threshold=s.latency_alarm_ms * 1000,  # ModelLatency is in microseconds
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            alarm_description=f"p90 model latency above {s.latency_alarm_ms} ms: a blue/green rollout rolls back on this",
        )
        for alarm in (self.error_alarm, self.latency_alarm):
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
            alarm.add_ok_action(cw_actions.SnsAction(alarm_topic))
            alarm.add_insufficient_data_action(cw_actions.SnsAction(alarm_topic))

        pipeline_dims = {"PipelineName": s.pipeline_name}
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{s.endpoint_name}-overview")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Invocations",
                left=[
                    cloudwatch.Metric(
                        namespace="AWS/SageMaker",
                        metric_name="Invocations",
                        dimensions_map=dims,
                        statistic="Sum",
                    )
                ],
            ),
            cloudwatch.GraphWidget(
                title="Model latency p50/p90 (us)", left=[latency.with_(statistic="p50"), latency]
            ),
            cloudwatch.GraphWidget(
                title="Errors",
                left=[
                    errors,
                    cloudwatch.Metric(
                        namespace="AWS/SageMaker",
                        metric_name="Invocation4XXErrors",
                        dimensions_map=dims,
                        statistic="Sum",
                    ),
                ],
            ),
            cloudwatch.AlarmStatusWidget(
                title="Rollback alarms", alarms=[self.error_alarm, self.latency_alarm]
            ),
            cloudwatch.GraphWidget(
                title="Pipeline executions",
                left=[
                    cloudwatch.Metric(
                        namespace="AWS/Sagemaker/ModelBuildingPipeline",
                        metric_name=name,
                        dimensions_map=pipeline_dims,
                        statistic="Sum",
                        period=Duration.hours(1),
                    )
                    for name in ("ExecutionStarted", "ExecutionSucceeded", "ExecutionFailed")
                ],
            ),
        )

        # ---- the deployer Lambda -----------------------------------------------------------------------
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        log_group = logs.LogGroup(
            self, "Logs", encryption_key=key, retention=s.log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        role = iam.Role(
            self,
            "DeployerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Deploys approved model packages to the endpoint",
        )
        group_arn = stack.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{s.model_package_group}/*"
        )
        named = stack.format_arn(service="sagemaker", resource="model", resource_name=f"{s.endpoint_name}-v*")
        tracking_alarms = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"TargetTracking-endpoint/{s.endpoint_name}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        configs = stack.format_arn(
            service="sagemaker", resource="endpoint-config", resource_name=f"{s.endpoint_name}-v*"
        )
        deployer_policy = iam.ManagedPolicy(
            self,
            "DeployerPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="ReadPackages", actions=["sagemaker:DescribeModelPackage"], resources=[group_arn]
                ),
                iam.PolicyStatement(
                    sid="ModelsAndConfigs",
                    actions=[
                        "sagemaker:CreateModel",
                        "sagemaker:DescribeModel",
                        "sagemaker:CreateEndpointConfig",
                        "sagemaker:DescribeEndpointConfig",
                        "sagemaker:AddTags",
                    ],
                    resources=[named, configs],
                ),
                # UpdateEndpointWeightsAndCapacities: Application Auto Scaling's RegisterScalableTarget checks it
                # on the caller.
                iam.PolicyStatement(
                    sid="Endpoint",
                    actions=[
                        "sagemaker:CreateEndpoint",
                        "sagemaker:UpdateEndpoint",
                        "sagemaker:DescribeEndpoint",
                        "sagemaker:UpdateEndpointWeightsAndCapacities",
                        "sagemaker:AddTags",
                    ],
                    resources=[endpoint_arn, configs],
                ),
                # Target tracking creates and manages its own alarms with the caller's permissions.
                iam.PolicyStatement(
                    sid="TargetTrackingAlarms",
                    actions=[
                        "cloudwatch:PutMetricAlarm",
                        "cloudwatch:DescribeAlarms",
                        "cloudwatch:DeleteAlarms",
                    ],
                    resources=[tracking_alarms],
                ),
                iam.PolicyStatement(
                    sid="PassEndpointRole",
                    actions=["iam:PassRole"],
                    resources=[self.endpoint_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="CheckArtifacts", actions=["s3:GetObject"], resources=[artifacts.arn_for_objects("*")]
                ),
                iam.PolicyStatement(
                    sid="DecryptArtifacts",
                    actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    resources=[key.key_arn],
                ),
                # An endpoint config with KmsKeyId: SageMaker creates grants on the key for the caller's request.
                iam.PolicyStatement(
                    sid="GrantKeyToSageMaker",
                    actions=["kms:CreateGrant"],
                    resources=[key.key_arn],
                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                ),
                iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[alarm_topic.topic_arn]),
                # Application Auto Scaling has no resource-level permissions for these calls.
                iam.PolicyStatement(
                    sid="Autoscaling",
                    actions=[
                        "application-autoscaling:RegisterScalableTarget",
                        "application-autoscaling:PutScalingPolicy",
                        "application-autoscaling:DescribeScalableTargets",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="AutoscalingRole",
                    actions=["iam:CreateServiceLinkedRole"],
                    resources=[
                        stack.format_arn(
                            service="iam",
                            region="",
                            resource="role",
                            resource_name=(
                                "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                                "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                            ),
                        )
                    ],
                    conditions={
                        "StringLike": {
                            "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"
                        }
                    },
                ),
                iam.PolicyStatement(
                    sid="Logs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn, f"{log_group.log_group_arn}:*"],
                ),
                iam.PolicyStatement(
                    sid="VpcDescribe",
                    actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="VpcInterfaces",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=[
                        stack.format_arn(service="ec2", resource=r, resource_name="*")
                        for r in ("network-interface", "subnet", "security-group")
                    ],
                ),
            ],
            description="What the endpoint deployer does",
        )
        policy = deployer_policy.node.default_child
        for text, why in (
            (
                names.arn_text("sagemaker", f"model-package/{s.model_package_group}/*"),
                "versions of this group are numbered by the registry",
            ),
            (
                names.arn_text("sagemaker", f"model/{s.endpoint_name}-v*"),
                "one model per deployed package version",
            ),
            (
                names.arn_text("sagemaker", f"endpoint-config/{s.endpoint_name}-v*"),
                "one endpoint config per deployed package version",
            ),
            (names.objects_text("artifacts"), "compile reports and artifacts under per-execution prefixes"),
            ("*", "Application Auto Scaling and EC2 Describe* have no resource-level permissions"),
            (
                names.arn_text("cloudwatch", f"alarm:TargetTracking-endpoint/{s.endpoint_name}/*"),
                "target tracking names its alarms after the endpoint at run time",
            ),
            (f"<{_logical(log_group)}.Arn>:*", "the log streams of the deployer's own log group"),
        ):
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{text}]", f"Wildcard needed: {why}")
        for resource in ("network-interface/*", "subnet/*", "security-group/*"):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{names.arn_text('ec2', resource)}]",
                "Lambda creates its VPC network interfaces in our subnets at run time",
            )

        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="deployer.handler",
            code=lambda_.Code.from_asset(str(RUNTIME), exclude=["__pycache__", "*.pyc"]),
            description="Deploys an approved model package to the inf2 endpoint (blue/green, auto-rollback)",
            timeout=Duration.minutes(5),
            memory_size=256,
            role=role,
            log_group=log_group,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[security_group],
            # One deployment at a time: two approvals must not race on the same endpoint.
            reserved_concurrent_executions=1,
            dead_letter_queue=self.dead_letters,
            retry_attempts=2,
            environment_encryption=key,
            environment={
                "ENDPOINT_NAME": s.endpoint_name,
                "MODEL_PACKAGE_GROUP": s.model_package_group,
                "INSTANCE_TYPE": s.instance_type,
                "INITIAL_INSTANCE_COUNT": str(s.initial_instance_count),
                "MAX_INSTANCE_COUNT": str(s.max_instance_count),
                "INVOCATIONS_PER_INSTANCE": str(s.invocations_per_instance),
                "CANARY_PERCENT": str(s.canary_percent),
                "CANARY_WAIT_SECONDS": str(s.canary_wait_seconds),
                "DATA_CAPTURE_PERCENT": str(s.data_capture_percent),
                "CAPTURE_S3_URI": f"s3://{artifacts.bucket_name}/{CAPTURE_PREFIX}/{s.endpoint_name}",
                "KMS_KEY_ARN": key.key_arn,
                "ENDPOINT_ROLE_ARN": self.endpoint_role.role_arn,
                "SUBNETS": ",".join(sn.subnet_id for sn in vpc.isolated_subnets),
                "SECURITY_GROUPS": security_group.security_group_id,
                "ALARM_NAMES": f"{s.endpoint_name}-5xx,{s.endpoint_name}-latency",
                "TOPIC_ARN": alarm_topic.topic_arn,
            },
        )
        self.function.node.add_dependency(deployer_policy)
        for pack in ("HIPAA.Security", "NIST.800.53.R5"):
            acknowledge(
                role.node.find_child("DefaultPolicy").node.default_child,
                f"{pack}-IAMNoInlinePolicy",
                "CDK's Lambda adds its dead-letter grant here: sqs:SendMessage on this one queue, nothing else",
            )

        # A deployment that ran out of retries (e.g. the endpoint stayed busy) must not vanish silently.
        dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_name=f"{s.endpoint_name}-deployer-dead-letters",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5)
            ),
            threshold=1,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            alarm_description="An approval event could not be deployed after retries; see the deployer's log",
        )
        dead_letter_alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
        dead_letter_alarm.add_ok_action(cw_actions.SnsAction(alarm_topic))
        dead_letter_alarm.add_insufficient_data_action(cw_actions.SnsAction(alarm_topic))
        # Autoscaling is registered when the new endpoint is InService (not possible while Creating).
        events.Rule(
            self,
            "OnEndpointInService",
            description=f"{s.endpoint_name} in service -> register autoscaling",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [s.endpoint_name], "EndpointStatus": ["IN_SERVICE"]},
            ),
            targets=[
                targets.LambdaFunction(self.function, retry_attempts=2, dead_letter_queue=self.dead_letters)
            ],
        )
        self.rule = events.Rule(
            self,
            "OnApproval",
            description=f"Approved packages of {s.model_package_group} -> {s.endpoint_name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={
                    "ModelPackageGroupName": [s.model_package_group],
                    "ModelApprovalStatus": ["Approved"],
                },
            ),
            targets=[
                targets.LambdaFunction(self.function, retry_attempts=2, dead_letter_queue=self.dead_letters)
            ],
        )


def _logical(construct: Construct) -> str:
    """The logical id cdk-nag prints for a resource in its findings (``<LogicalId.Arn>``)."""
    from aws_cdk import CfnElement

    default = construct.node.default_child
    assert isinstance(default, CfnElement)
    return Stack.of(construct).resolve(default.logical_id)
