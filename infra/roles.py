"""Service roles with one managed policy each, and the statements several of them share.

Managed (not inline) policies with explicit actions: the HIPAA and NIST packs forbid inline ones, and
CDK's grant helpers would add wildcard actions (s3:GetObject*, kms:ReEncrypt*) these roles do not need.
Each helper creates its resources under the construct ids it is given, so the logical ids stay the ones
the deployed stacks already have.
"""

from __future__ import annotations

from typing import NamedTuple

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from infra.nag import acknowledge
from infra.names import PlatformNames

# The resource types a VPC network interface is created against (SageMaker jobs and endpoints, Lambda).
ENI_RESOURCES = ("network-interface", "subnet", "security-group")
KEY_USE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]


class RoleWithPolicy(NamedTuple):
    role: iam.Role
    policy: iam.ManagedPolicy

    @property
    def policy_resource(self) -> IConstruct | None:
        """The CloudFormation resource of the policy: where its findings are acknowledged."""
        return self.policy.node.default_child


def role_with_policy(
    scope: Construct,
    role_id: str,
    policy_id: str,
    *,
    service: str,
    role_description: str,
    policy_description: str,
    statements: list[iam.PolicyStatement],
) -> RoleWithPolicy:
    """A role ``service`` assumes (e.g. ``sagemaker.amazonaws.com``) and the one managed policy it holds."""
    role = iam.Role(scope, role_id, assumed_by=iam.ServicePrincipal(service), description=role_description)
    policy = iam.ManagedPolicy(
        scope, policy_id, roles=[role], statements=statements, description=policy_description
    )
    return RoleWithPolicy(role, policy)


def sagemaker_arn(scope: IConstruct, resource_path: str) -> str:
    """``model-package/<group>/*`` -> ``arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/*``."""
    resource, _, name = resource_path.partition("/")
    return Stack.of(scope).format_arn(service="sagemaker", resource=resource, resource_name=name)


def eni_arns(scope: IConstruct) -> list[str]:
    """Every network interface, subnet and security group of the account and region (``.../*``)."""
    return [Stack.of(scope).format_arn(service="ec2", resource=r, resource_name="*") for r in ENI_RESOURCES]


def use_key(key: kms.IKey, *, create_grant: bool) -> iam.PolicyStatement:
    """``create_grant``: SageMaker creates grants on the key for the volumes of the jobs and endpoints."""
    return iam.PolicyStatement(
        sid="UseKey",
        actions=KEY_USE + (["kms:CreateGrant"] if create_grant else []),
        resources=[key.key_arn],
    )


def list_buckets(sid: str, *buckets: s3.IBucket) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        actions=["s3:ListBucket", "s3:GetBucketLocation"],
        resources=[bucket.bucket_arn for bucket in buckets],
    )


def pass_role_to_sagemaker(sid: str, role: iam.IRole) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        actions=["iam:PassRole"],
        resources=[role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )


def acknowledge_eni_wildcards(policy: IConstruct | None, names: PlatformNames, reason: str) -> None:
    for resource in ENI_RESOURCES:
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{names.arn_text('ec2', resource + '/*')}]", reason)
