"""The deployer Lambda (``runtime/deployer.py``, beside this file), its role, log group and dead-letter
queue. It runs alone (reserved concurrency 1) in the private subnets, so two approvals never race on
the endpoint, and reads its settings from the environment this module sets."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from infra.deploy.settings import CAPTURE_PREFIX, EndpointSettings
from infra.nag import acknowledge, acknowledge_hipaa_and_nist
from infra.names import PlatformNames
from infra.roles import (
    acknowledge_eni_wildcards,
    eni_arns,
    pass_role_to_sagemaker,
    role_with_policy,
    sagemaker_arn,
)

RUNTIME = Path(__file__).with_name("runtime")


def add_dead_letter_queue(scope: Construct, key: kms.IKey) -> sqs.Queue:
    """Approval and in-service events the deployer failed on after its retries."""
    return sqs.Queue(
        scope,
        "DeadLetters",
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )


def add_deployer_function(
    scope: Construct,
    *,
    settings: EndpointSettings,
    names: PlatformNames,
    artifacts: s3.IBucket,
    key: kms.IKey,
    vpc: ec2.IVpc,
    security_group: ec2.ISecurityGroup,
    alarm_topic: sns.ITopic,
    endpoint_role: iam.IRole,
    dead_letters: sqs.IQueue,
) -> lambda_.Function:
    log_group = logs.LogGroup(
        scope,
        "Logs",
        encryption_key=key,
        retention=settings.log_retention,
        removal_policy=RemovalPolicy.RETAIN,
    )
    deployer = role_with_policy(
        scope,
        "DeployerRole",
        "DeployerPolicy",
        service="lambda.amazonaws.com",
        role_description="Deploys approved model packages to the endpoint",
        policy_description="What the endpoint deployer does",
        statements=deployer_statements(
            scope,
            settings=settings,
            artifacts=artifacts,
            key=key,
            alarm_topic=alarm_topic,
            endpoint_role=endpoint_role,
            log_group=log_group,
        ),
    )
    _acknowledge_deployer_wildcards(deployer.policy_resource, settings, names, log_group)
    function = lambda_.Function(
        scope,
        "Function",
        runtime=lambda_.Runtime.PYTHON_3_14,
        handler="deployer.handler",
        code=lambda_.Code.from_asset(str(RUNTIME), exclude=["__pycache__", "*.pyc"]),
        description="Deploys an approved model package to the Neuron endpoint (blue/green, auto-rollback)",
        timeout=Duration.minutes(5),
        memory_size=256,
        role=deployer.role,
        log_group=log_group,
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        security_groups=[security_group],
        # One deployment at a time: two approvals must not race on the same endpoint.
        reserved_concurrent_executions=1,
        dead_letter_queue=dead_letters,
        retry_attempts=2,
        environment_encryption=key,
        environment=deployer_environment(
            settings,
            artifacts=artifacts,
            key=key,
            vpc=vpc,
            security_group=security_group,
            alarm_topic=alarm_topic,
            endpoint_role=endpoint_role,
        ),
    )
    function.node.add_dependency(deployer.policy)
    acknowledge_hipaa_and_nist(
        deployer.role.node.find_child("DefaultPolicy").node.default_child,
        "IAMNoInlinePolicy",
        "CDK's Lambda adds its dead-letter grant here: sqs:SendMessage on this one queue, nothing else",
    )
    return function


def deployer_environment(
    settings: EndpointSettings,
    *,
    artifacts: s3.IBucket,
    key: kms.IKey,
    vpc: ec2.IVpc,
    security_group: ec2.ISecurityGroup,
    alarm_topic: sns.ITopic,
    endpoint_role: iam.IRole,
) -> dict[str, str]:
    """What ``runtime/deployer.py``'s ``Settings.from_env`` reads, each variable once."""
    s = settings
    return {
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
        "ENDPOINT_ROLE_ARN": endpoint_role.role_arn,
        "SUBNETS": ",".join(sn.subnet_id for sn in vpc.isolated_subnets),
        "SECURITY_GROUPS": security_group.security_group_id,
        "ALARM_NAMES": f"{s.error_alarm_name},{s.latency_alarm_name}",
        "TOPIC_ARN": alarm_topic.topic_arn,
    }


def deployer_statements(
    scope: Construct,
    *,
    settings: EndpointSettings,
    artifacts: s3.IBucket,
    key: kms.IKey,
    alarm_topic: sns.ITopic,
    endpoint_role: iam.IRole,
    log_group: logs.ILogGroup,
) -> list[iam.PolicyStatement]:
    """Every call runtime/deployer.py makes, on this endpoint's models, configs and alarms only; no Delete*."""
    stack = Stack.of(scope)
    endpoint = settings.endpoint_name
    configs = sagemaker_arn(scope, f"endpoint-config/{endpoint}-v*")
    return [
        iam.PolicyStatement(
            sid="ReadPackages",
            actions=["sagemaker:DescribeModelPackage"],
            resources=[sagemaker_arn(scope, f"model-package/{settings.model_package_group}/*")],
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
            resources=[sagemaker_arn(scope, f"model/{endpoint}-v*"), configs],
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
            resources=[sagemaker_arn(scope, f"endpoint/{endpoint}"), configs],
        ),
        # Target tracking creates and manages its own alarms with the caller's permissions
        # (https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html);
        # their names start with TargetTracking- (AWSApplicationAutoscalingSageMakerEndpointPolicy grants on
        # alarm:TargetTracking*), followed by the scalable target's resource id, endpoint/<name>/variant/<variant>.
        iam.PolicyStatement(
            sid="TargetTrackingAlarms",
            actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
            resources=[
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=f"TargetTracking-endpoint/{endpoint}/*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        ),
        pass_role_to_sagemaker("PassEndpointRole", endpoint_role),
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
        # RegisterScalableTarget, PutScalingPolicy and DeregisterScalableTarget authorize on the scalable target's ARN, whose id
        # Application Auto Scaling generates (scalable-target/<id>), so "*" narrowed by the namespace and
        # dimension they carry; DescribeScalableTargets takes no resource and neither key
        # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsapplicationautoscaling.html).
        iam.PolicyStatement(
            sid="Autoscaling",
            actions=[
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
                # Before an update that changes the variant's instance type (endpoint-scaling-update.html).
                "application-autoscaling:DeregisterScalableTarget",
            ],
            resources=["*"],
            conditions={
                "StringEquals": {
                    "application-autoscaling:service-namespace": "sagemaker",
                    "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
                }
            },
        ),
        iam.PolicyStatement(
            sid="DescribeAutoscaling",
            actions=["application-autoscaling:DescribeScalableTargets"],
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
                "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
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
            resources=eni_arns(scope),
        ),
    ]


def _acknowledge_deployer_wildcards(
    policy: IConstruct | None, settings: EndpointSettings, names: PlatformNames, log_group: logs.LogGroup
) -> None:
    endpoint = settings.endpoint_name
    for text, why in (
        (
            names.arn_text("sagemaker", f"model-package/{settings.model_package_group}/*"),
            "versions of this group are numbered by the registry",
        ),
        (names.arn_text("sagemaker", f"model/{endpoint}-v*"), "one model per deployed package version"),
        (
            names.arn_text("sagemaker", f"endpoint-config/{endpoint}-v*"),
            "one endpoint config per deployed package version",
        ),
        (names.objects_text("artifacts"), "compile reports and artifacts under per-execution prefixes"),
        (
            "*",
            "Application Auto Scaling's target ids are generated (Register/Put are narrowed by namespace and "
            "dimension); DescribeScalableTargets and EC2 Describe* have no resource-level permissions",
        ),
        (
            names.arn_text("cloudwatch", f"alarm:TargetTracking-endpoint/{endpoint}/*"),
            "target tracking names its alarms after the endpoint at run time",
        ),
        (f"<{_logical_id(log_group)}.Arn>:*", "the log streams of the deployer's own log group"),
    ):
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{text}]", f"Wildcard needed: {why}")
    acknowledge_eni_wildcards(
        policy, names, "Lambda creates its VPC network interfaces in our subnets at run time"
    )


def _logical_id(construct: Construct) -> str:
    """The logical id cdk-nag prints for a resource in its findings (``<LogicalId.Arn>``)."""
    default = construct.node.default_child
    assert isinstance(default, CfnElement)
    return Stack.of(construct).resolve(default.logical_id)
