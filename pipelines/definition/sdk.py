"""The SageMaker Python SDK v3, set up to build pipeline definitions offline.

``definition()`` needs no AWS account when: the region is set before the SDK is first imported (its
``ai_registry`` module creates a boto3 client at import time), telemetry is opted out through an SDK
config file (otherwise a background thread calls STS), role validation is off and the role is an ARN,
and the session's default bucket is preset (otherwise the SDK lists or creates a bucket). The same
config file is given as the admin and the user config so that no config on the developer's machine
(``/etc/xdg/sagemaker/config.yaml``, ``~/.config/sagemaker/config.yaml``) can inject defaults, such as a
VPC or KMS key, into the definition: the JSON depends on the project config alone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

SDK_CONFIG = Path(__file__).with_name("sdk_config.yaml")


def offline_session(region: str, bucket: str) -> Any:
    """A PipelineSession that records requests instead of sending them."""
    if "sagemaker" not in sys.modules:
        os.environ.setdefault("AWS_DEFAULT_REGION", region)
    os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(SDK_CONFIG)
    os.environ["SAGEMAKER_ADMIN_CONFIG_OVERRIDE"] = str(SDK_CONFIG)
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    # No instance-metadata lookups for credentials: nothing here needs credentials.
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    validate_sdk_config_once()

    session = PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=bucket)
    # `default_bucket=` only names the bucket; default_bucket() would still check it exists in S3.
    # Presetting the resolved value (a private attribute of the SDK) keeps that call offline.
    session._default_bucket = bucket
    return session


def validate_sdk_config_once() -> None:
    """Validate each distinct SDK config once, not on every lookup.

    The SDK checks its whole config against its JSON schema each time it reads a single value
    (``get_sagemaker_config_value`` -> ``SageMakerConfig().validate_sagemaker_config``, sagemaker-core
    2.27.0 ``common_utils.py`` and ``config/config_manager.py``), 65 times per definition, and jsonschema
    re-checks the schema itself each time: 23 of 30 profiled seconds of ``mlops pipeline definition``.
    Our config is one fixed file (``sdk_config.yaml``), so the first validation answers for all; a
    different config is still validated, once. The definition is unchanged (the golden test holds it)."""
    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"].__func__
    if getattr(original, "validated", None) is not None:
        return  # already wrapped
    validated: set[str] = set()

    def validate(sagemaker_config: dict[str, Any] | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in validated:
            original(sagemaker_config)
            validated.add(key)

    validate.validated = validated  # type: ignore[attr-defined]
    SageMakerConfig.validate_sagemaker_config = staticmethod(validate)  # type: ignore[method-assign]
