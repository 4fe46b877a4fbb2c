"""Parts of the CDK app that need no synth: the check that the pipeline definition's placeholders and
the stack's values agree (infra/pipeline/definition.py)."""

import json

import pytest

from infra.pipeline.definition import checked_definition
from infra.pipeline.settings import PipelineSettings
from pipelines.definition.placeholders import placeholder_names


def _settings(definition: str) -> PipelineSettings:
    return PipelineSettings(
        pipeline_name="p",
        model_package_group="g",
        definition_json=definition,
        subnet_count=1,
        source_commit="abc",
        schedule=None,
    )


def _definition(*names: str) -> str:
    return json.dumps({"Steps": [{"Value": "${" + n + "}"} for n in names]})


def test_a_definition_whose_placeholders_all_have_values_passes_unchanged():
    values = dict.fromkeys(placeholder_names(1), "v")
    definition = _definition("DataBucket", "PrivateSubnet1", "AWS::Partition", "AWS::AccountId")
    assert checked_definition(_settings(definition), values, mlflow=False) == definition


def test_a_placeholder_without_a_value_or_a_value_without_a_placeholder_fails_synth():
    values = dict.fromkeys(placeholder_names(1), "v")
    with pytest.raises(ValueError, match=r"unfilled \['Nowhere'\]"):
        checked_definition(_settings(_definition("Nowhere")), values, mlflow=False)
    with pytest.raises(ValueError, match=r"unknown \['MlflowTrackingServerArn'\]"):
        checked_definition(
            _settings(_definition("DataBucket")), {**values, "MlflowTrackingServerArn": "arn"}, mlflow=False
        )


def test_a_definition_that_is_not_json_fails_synth():
    with pytest.raises(json.JSONDecodeError):
        checked_definition(_settings("{not json"), dict.fromkeys(placeholder_names(1), "v"), mlflow=False)
