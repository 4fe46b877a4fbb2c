"""The pipeline definition as the stack deploys it: the generated JSON and the deploy-time values of its
``${Name}`` placeholders, which must agree, or synth fails (not the deployment)."""

from __future__ import annotations

import json

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from infra.pipeline.settings import PipelineSettings
from pipelines.definition.placeholders import (
    MLFLOW_TRACKING,
    PSEUDO_PARAMETERS,
    placeholder_names,
    subnet_placeholders,
    used_placeholders,
)


def deploy_time_values(
    settings: PipelineSettings,
    *,
    training_image: str,
    inference_image: str,
    data: s3.IBucket,
    artifacts: s3.IBucket,
    key: kms.IKey,
    job_role: iam.IRole,
    vpc: ec2.IVpc,
    security_group: ec2.ISecurityGroup,
    mlflow_arn: str | None,
) -> dict[str, str]:
    """Placeholder name -> its value (mostly tokens CloudFormation resolves)."""
    values = {
        "TrainingImageUri": training_image,
        "InferenceImageUri": inference_image,
        "DataBucket": data.bucket_name,
        "ArtifactsBucket": artifacts.bucket_name,
        "KmsKeyArn": key.key_arn,
        "JobRoleName": job_role.role_name,
        "JobSecurityGroupId": security_group.security_group_id,
        "SourceCommit": settings.source_commit,
    }
    subnets = vpc.isolated_subnets
    for i, name in enumerate(subnet_placeholders(settings.subnet_count)):
        values[name] = subnets[i].subnet_id
    if mlflow_arn is not None:
        values[MLFLOW_TRACKING] = mlflow_arn
    return values


def checked_definition(settings: PipelineSettings, values: dict[str, str], *, mlflow: bool) -> str:
    """The definition JSON, once every placeholder it uses has a value and every value a placeholder."""
    expected = set(placeholder_names(settings.subnet_count, mlflow=mlflow))
    used = used_placeholders(settings.definition_json) - set(PSEUDO_PARAMETERS)
    if used - set(values) or set(values) - expected:
        raise ValueError(
            f"pipeline placeholders and stack values disagree: unfilled {sorted(used - set(values))}, "
            f"unknown {sorted(set(values) - expected)}"
        )
    json.loads(settings.definition_json)  # a broken definition fails synth, not the deployment
    return settings.definition_json
