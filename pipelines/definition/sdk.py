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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SDK_CONFIG = Path(__file__).with_name("sdk_config.yaml")


def offline_environment(region: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with what the offline build sets: the SDK config files, no role validation, no
    instance-metadata lookups (nothing here needs credentials), and a region if none is set (the SDK
    creates boto3 clients at import and in every LocalSession, and they need one)."""
    return {
        "AWS_DEFAULT_REGION": region,
        **environ,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(SDK_CONFIG),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(SDK_CONFIG),
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def offline_session(region: str, bucket: str) -> Any:
    """A PipelineSession that records requests instead of sending them."""
    os.environ.update(offline_environment(region, os.environ))

    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    validate_sdk_config_once()

    session = PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=bucket)
    # `default_bucket=` only names the bucket; default_bucket() would still check it exists in S3.
    # Presetting the resolved value (a private attribute of the SDK) keeps that call offline.
    session._default_bucket = bucket
    return session


def validate_sdk_config_once() -> None:
    """Validate each distinct SDK config once, not on every lookup and every session.

    The SDK checks its whole config against its JSON schema each time it reads a single value
    (``get_sagemaker_config_value`` -> ``SageMakerConfig().validate_sagemaker_config``, sagemaker-core
    2.27.0 ``common_utils.py`` and ``config/config_manager.py``), 65 times per definition, and again for
    each file each session loads (``load_sagemaker_config`` -> ``validate_sagemaker_config``,
    ``config/config.py``): the PipelineSession, and a LocalSession that every ``ProcessingStep`` builds
    to read a method name (sagemaker-mlops ``workflow/steps.py``, ``LocalSagemakerClient()``). jsonschema
    re-checks the schema itself each time: most of ``mlops pipeline definition``'s time after imports.
    Both modules call ``jsonschema.validate(config, SCHEMA)`` through their module's ``jsonschema``
    name, so that name is given a memo that validates a (config, schema) pair the first time only; a
    config that fails is not remembered and fails every time. The definition is unchanged (the golden
    test holds it)."""
    from sagemaker.core.config import config, config_manager

    for module in (config, config_manager):
        if not isinstance(module.jsonschema, _ValidateOnce):
            module.jsonschema = _ValidateOnce(module.jsonschema)  # type: ignore[attr-defined]


class _ValidateOnce:
    """``jsonschema`` with a ``validate`` that remembers what passed; every other name is jsonschema's."""

    def __init__(self, jsonschema: Any) -> None:
        self._jsonschema = jsonschema
        # (schema, canonical instance) pairs that passed; the schema object itself is held, so its id
        # cannot be reused by another.
        self._passed: dict[tuple[int, str], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jsonschema, name)

    def validate(self, instance: Any, schema: Any, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:  # another validator class or format checker: not what was remembered
            self._jsonschema.validate(instance, schema, *args, **kwargs)
            return
        try:
            # repr, not str, for values JSON lacks (a YAML date): a date and its string differ.
            key = (id(schema), json.dumps(instance, sort_keys=True, default=repr))
        except (TypeError, ValueError):  # keys of mixed types: validate as the SDK would
            self._jsonschema.validate(instance, schema)
            return
        if key not in self._passed:
            self._jsonschema.validate(instance, schema)
            self._passed[key] = schema
