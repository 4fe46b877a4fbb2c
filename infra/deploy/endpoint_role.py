"""The endpoint's execution role: SageMaker assumes it to host the model (model data, the inference
image, data capture, logs and metrics, network interfaces in our subnets) and to watch the rollback alarms
of a blue/green update. ``infra/iam_calls.py`` lists each call with its page."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.deploy.monitoring import RollbackAlarms
from infra.deploy.settings import CAPTURE_PREFIX, EndpointSettings
from infra.nag import acknowledge
from infra.names import PlatformNames
from infra.roles import list_buckets, role_with_policy, use_key
from infra.sagemaker_hosting import acknowledge_container_wildcards, container_statements, pull_images

LOG_GROUPS = "/aws/sagemaker/Endpoints/*"


def add_endpoint_role(
    scope: Construct,
    *,
    settings: EndpointSettings,
    names: PlatformNames,
    artifacts: s3.IBucket,
    key: kms.IKey,
    inference_repository: ecr.IRepository,
    rollback_alarms: RollbackAlarms,
) -> iam.Role:
    endpoint = settings.endpoint_name
    hosting = role_with_policy(
        scope,
        "EndpointRole",
        "EndpointPolicy",
        service="sagemaker.amazonaws.com",
        role_description=f"Hosts {endpoint}: model data, image, capture, logs",
        policy_description=f"What the {endpoint} endpoint's hosting does",
        statements=[
            iam.PolicyStatement(
                sid="ModelData", actions=["s3:GetObject"], resources=[artifacts.arn_for_objects("*")]
            ),
            iam.PolicyStatement(
                sid="DataCapture",
                actions=["s3:PutObject"],
                resources=[artifacts.arn_for_objects(f"{CAPTURE_PREFIX}/*")],
            ),
            list_buckets("ListArtifacts", artifacts),
            use_key(key, create_grant=True),
            pull_images("PullImage", [inference_repository.repository_arn]),
            # Auto-rollback reads the alarms with the execution role: "Ensure that your IAM execution role
            # has permission to perform the cloudwatch:DescribeAlarms action on the auto-rollback alarms you
            # specify" (https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html).
            # An endpoint has no role of its own; the execution role is its model's (CreateModel
            # ExecutionRoleArn, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html),
            # which is this role.
            iam.PolicyStatement(
                sid="RollbackAlarms",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[rollback_alarms.errors.alarm_arn, rollback_alarms.latency.alarm_arn],
            ),
            *container_statements(Stack.of(scope), LOG_GROUPS),
        ],
    )
    policy = hosting.policy_resource
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
    acknowledge_container_wildcards(policy, names, LOG_GROUPS)
    return hosting.role
