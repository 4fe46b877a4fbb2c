"""IAM statements every SageMaker-assumed role here needs to run containers in our VPC: the image pull
login, logs and metrics under /aws/sagemaker, and the network interfaces SageMaker creates in our
subnets. Shared by the job role and the endpoint role, with the acknowledgements of their wildcards."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra.nag import acknowledge
from infra.names import PlatformNames
from infra.roles import acknowledge_eni_wildcards, eni_arns


def pull_images(sid: str, repository_arns: Iterable[str]) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
        resources=list(repository_arns),
    )


def container_statements(stack: Stack, log_groups: str) -> list[iam.PolicyStatement]:
    """``log_groups``: the log-group name pattern, e.g. ``/aws/sagemaker/*``."""
    return [
        # GetAuthorizationToken has no resource-level permissions (ECR API reference).
        iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(
            sid="Logs",
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=log_groups,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        ),
        iam.PolicyStatement(
            sid="Metrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}},
        ),
        # SageMaker creates the network interfaces in our subnets with this role; EC2's Describe* actions
        # support no resource-level permissions.
        iam.PolicyStatement(
            sid="VpcDescribe",
            actions=[
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeVpcs",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeDhcpOptions",
            ],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="VpcInterfaces",
            actions=[
                "ec2:CreateNetworkInterface",
                "ec2:CreateNetworkInterfacePermission",
                "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission",
            ],
            resources=eni_arns(stack),
        ),
    ]


def acknowledge_container_wildcards(policy: IConstruct | None, names: PlatformNames, log_groups: str) -> None:
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "APIs without resource-level permissions: ecr:GetAuthorizationToken and EC2 Describe*; "
        "cloudwatch:PutMetricData is limited to the /aws/sagemaker/* namespaces by condition",
    )
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[Resource::{names.arn_text('logs', 'log-group:' + log_groups)}]",
        "SageMaker names its log groups and streams after the job or endpoint at run time",
    )
    acknowledge_eni_wildcards(
        policy,
        names,
        "SageMaker creates the network interfaces in our subnets and security group at run time",
    )
