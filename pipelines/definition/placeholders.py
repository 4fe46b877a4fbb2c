"""Deploy-time values in the pipeline definition, as named ``${Name}`` placeholders.

The definition is generated offline, with no AWS account, so values that exist only once the stacks
are deployed (image URIs, buckets, the KMS key, the job role, subnets, security group) appear as
``${Name}``. The CDK stack fills them in with ``Fn.sub`` (whose syntax this is); the local executor
fills them in with local values (``substitute``). ``${AWS::Partition}`` and ``${AWS::AccountId}`` are
CloudFormation pseudo parameters, which ``Fn.sub`` resolves by itself.

A literal ``${`` that is not one of these names would break ``Fn.sub``; tests/test_pipeline_definition.py
checks that every ``${...}`` in the definition is listed here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

PSEUDO_PARAMETERS = {
    "AWS::Partition": "CloudFormation: the partition (aws, aws-cn, aws-us-gov).",
    "AWS::AccountId": "CloudFormation: the account the stack is deployed in.",
}

_FIXED = {
    "TrainingImageUri": "ECR URI of containers/Dockerfile.train (train, prepare, evaluate, compile).",
    "InferenceImageUri": "ECR URI of containers/Dockerfile.inference (serve on inf2).",
    "DataBucket": "S3 bucket holding datasets and base models.",
    "ArtifactsBucket": "S3 bucket for job outputs, checkpoints and the Neuron compile cache.",
    "KmsKeyArn": "Customer-managed KMS key for volumes and outputs.",
    "JobRoleName": "Name of the SageMaker execution role the jobs run as.",
    "JobSecurityGroupId": "Security group of the jobs' network interfaces.",
    "SourceCommit": "Git commit the pipeline was deployed from (model package metadata).",
}

# Only with infra.mlflow: the tracking server exists only then.
MLFLOW_TRACKING = "MlflowTrackingServerArn"
_MLFLOW = {
    MLFLOW_TRACKING: "ARN of the managed MLflow tracking server: the fine-tune's MLFLOW_TRACKING_URI, which the "
    "sagemaker-mlflow plugin resolves (infra.mlflow only)."
}

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def subnet_placeholders(count: int) -> list[str]:
    return [f"PrivateSubnet{i}" for i in range(1, count + 1)]


def placeholder_names(subnet_count: int, mlflow: bool = False) -> dict[str, str]:
    """Every placeholder the definition may hold, with what it stands for."""
    names = {**_FIXED, **(_MLFLOW if mlflow else {})}
    for name in subnet_placeholders(subnet_count):
        names[name] = "A private (isolated) subnet of the VPC the jobs run in."
    return names


def ref(name: str) -> str:
    """``${name}``, for building strings that hold a placeholder."""
    return "${" + name + "}"


def job_role_arn() -> str:
    # The SageMaker SDK only accepts an ARN-shaped role without looking it up in IAM, so the role is
    # spelled as an ARN around its name; the pseudo parameters make it partition- and account-correct.
    return f"arn:{ref('AWS::Partition')}:iam::{ref('AWS::AccountId')}:role/{ref('JobRoleName')}"


def used_placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder, as ``Fn.sub`` does; a placeholder without a value is an error naming it."""
    missing = sorted(used_placeholders(text) - set(values))
    if missing:
        raise KeyError(f"no value for placeholder(s) {', '.join(missing)} in the pipeline definition")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def source_commit(repo: Path) -> str:
    """The ``SourceCommit`` value: the checkout's HEAD, with ``-dirty`` when uncommitted changes mean
    that the commit alone does not reproduce what was deployed; ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
