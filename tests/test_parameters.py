"""Pipeline parameters: the overrides a run may give, checked by the rules both twins apply."""

import pytest

from pipelines.definition.parameters import ParameterError, coerce_parameters


def declared():
    return {
        "Parameters": [
            {"Name": "Value", "Type": "Float", "DefaultValue": 2.0},
            {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.5},
            {"Name": "Mode", "Type": "String", "DefaultValue": "a", "EnumValues": ["a", "b"]},
        ]
    }


def test_parameter_errors_are_reported_together():
    with pytest.raises(ParameterError) as info:
        coerce_parameters(declared(), {"Valu": "1", "Threshold": "high", "Mode": "c"})
    message = str(info.value)
    assert "--param Valu: no such parameter; the pipeline has Value, Threshold, Mode" in message
    assert "--param Threshold='high': not a valid Float" in message
    assert "--param Mode='c': must be one of a, b" in message


def test_s3_parameters_must_be_s3_uris():
    definition = declared()
    definition["Parameters"].append({"Name": "TrainDataS3Uri", "Type": "String", "DefaultValue": "s3://b/d/"})
    with pytest.raises(
        ParameterError, match=r"--param TrainDataS3Uri='/home/me/train.jsonl': must be an s3:// URI"
    ):
        coerce_parameters(definition, {"TrainDataS3Uri": "/home/me/train.jsonl"})
