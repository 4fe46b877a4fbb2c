"""The SDK's config is validated once per distinct config, not on every value it reads."""

from __future__ import annotations

import jsonschema
import pytest
import yaml


def test_each_distinct_config_is_validated_once_and_a_bad_one_still_fails(monkeypatch):
    from sagemaker.core.config import config_manager

    from pipelines.definition.sdk import SDK_CONFIG, validate_sdk_config_once

    validate_sdk_config_once()
    validate_sdk_config_once()  # idempotent: wrapped once
    calls = []
    real = jsonschema.validate
    monkeypatch.setattr(
        config_manager.jsonschema, "validate", lambda *a, **k: (calls.append(1), real(*a, **k))
    )
    ours = yaml.safe_load(SDK_CONFIG.read_text())
    other = {**ours, "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": False}}}}
    for _ in range(3):
        config_manager.SageMakerConfig().validate_sagemaker_config(other)
    assert len(calls) == 1, "a config seen before is not validated again"
    with pytest.raises(jsonschema.ValidationError):
        config_manager.SageMakerConfig().validate_sagemaker_config({"SchemaVersion": "9.9", "Nope": 1})
