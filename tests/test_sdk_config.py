"""The SDK's config is validated once per distinct config, not on every value it reads or session it makes."""

from __future__ import annotations

import jsonschema
import pytest
import yaml


@pytest.fixture
def real_validations(monkeypatch):
    """Counts calls that reach jsonschema itself, after validate_sdk_config_once() wrapped the SDK."""
    from pipelines.definition.sdk import validate_sdk_config_once

    validate_sdk_config_once()
    validate_sdk_config_once()  # idempotent: wrapped once
    calls = []
    real = jsonschema.validate
    monkeypatch.setattr(jsonschema, "validate", lambda *a, **k: (calls.append(1), real(*a, **k)))
    return calls


def test_each_distinct_config_is_validated_once_and_a_bad_one_still_fails(real_validations):
    from sagemaker.core.config import config_manager

    from pipelines.definition.sdk import SDK_CONFIG

    ours = yaml.safe_load(SDK_CONFIG.read_text())
    other = {**ours, "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": False}}}}
    for _ in range(3):
        config_manager.SageMakerConfig().validate_sagemaker_config(other)
    assert len(real_validations) == 1, "a config seen before is not validated again"
    for _ in range(2):  # a failure is not remembered as a pass
        with pytest.raises(jsonschema.ValidationError):
            config_manager.SageMakerConfig().validate_sagemaker_config({"SchemaVersion": "9.9", "Nope": 1})
    assert len(real_validations) == 3


def test_sessions_loading_the_config_files_validate_them_once(real_validations, monkeypatch, tmp_path):
    """load_sagemaker_config (every Session and LocalSession) goes through the other module's copy."""
    from sagemaker.core.config import config

    from pipelines.definition.sdk import SDK_CONFIG

    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(SDK_CONFIG))
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(SDK_CONFIG))
    first = config.load_sagemaker_config()
    for _ in range(3):
        assert config.load_sagemaker_config() == first
    assert len(real_validations) <= 1, "the same file, loaded by four sessions, is validated once"
    bad = tmp_path / "config.yaml"
    bad.write_text("SchemaVersion: '9.9'\nNope: 1\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(bad))
    with pytest.raises(jsonschema.ValidationError):
        config.load_sagemaker_config()


def test_a_call_with_other_arguments_or_an_equal_looking_value_is_not_taken_for_a_pass(real_validations):
    import datetime

    from sagemaker.core.config import config_manager

    schema = {"type": "object", "properties": {"d": {"type": "string"}}}
    # A validator that ignores "type": {"d": 1} passes with it, and must still fail the plain call after.
    looser = jsonschema.validators.extend(jsonschema.Draft7Validator, {"type": lambda *a: iter(())})
    config_manager.jsonschema.validate({"d": 1}, schema, cls=looser)
    with pytest.raises(jsonschema.ValidationError):
        config_manager.jsonschema.validate({"d": 1}, schema)
    config_manager.jsonschema.validate({"d": "2026-11-29"}, schema)
    with pytest.raises(jsonschema.ValidationError):  # a YAML date is not its string
        config_manager.jsonschema.validate({"d": datetime.date(2026, 11, 29)}, schema)
