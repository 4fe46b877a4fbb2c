"""Pipeline parameters: the overrides a run may give, checked by the rules both twins apply."""

import json
from pathlib import Path

import pytest

import pipelines.definition.parameters as parameters_module
from config import load_config
from pipelines.definition.parameters import ParameterError, checks_definition, coerce_parameters


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


# ---- issue 15: S3 URIs, huge numbers, and the hyperparameters a job would get ---------------------------


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("s3://local-data/../../../etc/", "the key has a '.' or '..' path segment"),
        ("s3://local-data/datasets/./train/", "the key has a '.' or '..' path segment"),
        ("s3://../etc/", "'..' is not an S3 bucket name"),
        ("s3://Bad_Bucket/x/", "'Bad_Bucket' is not an S3 bucket name (3-63 lowercase letters"),
        ("s3:///x/", "'' is not an S3 bucket name"),
    ],
)
def test_an_s3_uri_that_climbs_out_or_names_no_bucket_is_refused(uri, problem):
    # item 14: `--param TrainDataS3Uri=s3://local-data/../../../etc/` reached the local store.
    definition = declared()
    definition["Parameters"].append({"Name": "TrainDataS3Uri", "Type": "String", "DefaultValue": "s3://b/d/"})
    with pytest.raises(ParameterError) as info:
        coerce_parameters(definition, {"TrainDataS3Uri": uri})
    assert f"--param TrainDataS3Uri='{uri}': {problem}" in str(info.value)
    ok = coerce_parameters(definition, {"TrainDataS3Uri": "s3://local-data/datasets/0123abcd/train/"})
    assert ok["TrainDataS3Uri"] == "s3://local-data/datasets/0123abcd/train/"


def test_a_number_past_pythons_digit_limit_is_refused_with_the_range():
    definition = {"Parameters": [{"Name": "MaxSteps", "Type": "Integer", "DefaultValue": 60}]}
    with pytest.raises(ParameterError) as info:
        coerce_parameters(definition, {"MaxSteps": "9" * 5000})
    message = str(info.value)
    assert "… (5000 chars): must be an integer from 1 to 1000000" in message
    assert len(message) < 500


def test_an_explicit_warmup_longer_than_max_steps_is_refused_before_the_run():
    cfg = load_config(overrides=["training.warmup_steps=5"])
    with pytest.raises(ParameterError) as info:
        coerce_parameters(checks_definition(cfg), {"MaxSteps": "3"})
    message = str(info.value)
    assert "step FineTune: 1 invalid hyperparameter:" in message
    assert "warmup_steps (5) must be smaller than max_steps (3)" in message
    assert "(training.* keys are config: change them there or choose other --param values)" in message
    # Left unset, the warmup is derived by the job from the MaxSteps it gets: nothing to refuse.
    assert coerce_parameters(checks_definition(load_config()), {"MaxSteps": "2"})["MaxSteps"] == 2


def test_the_check_reads_the_training_step_of_a_real_definition():
    """The local executor passes the generated definition; its FineTune hyperparameters are what the check
    reads, and checks_definition (what `pipeline start` passes) must resolve to the same strings."""
    golden = json.loads((Path(__file__).parent / "golden" / "pipeline.json").read_text())
    (finetune,) = [s for s in golden["Steps"] if s["Type"] == "Training"]
    mine = checks_definition(load_config())
    values = coerce_parameters(golden, {})
    resolve = parameters_module._resolve_text
    theirs = {k: resolve(v, values) for k, v in finetune["Arguments"]["HyperParameters"].items()}
    ours = {k: resolve(v, values) for k, v in mine["Steps"][0]["Arguments"]["HyperParameters"].items()}
    assert theirs == {**ours, "precompile": "false"}
    finetune["Arguments"]["HyperParameters"]["warmup_steps"] = "80"
    with pytest.raises(ParameterError, match=r"warmup_steps \(80\) must be smaller than max_steps \(60\)"):
        coerce_parameters(golden, {})


# ---- issue 15, review: only canonical numbers reach StartPipelineExecution ------------------------------


@pytest.mark.parametrize("raw", ["1_000", " 7 ", "٣", "+5", "007", "1e3", "7.0"])
def test_an_integer_parameter_must_be_written_in_plain_ascii_digits(raw):
    # Python's int() reads all of these, and the raw text was what `pipeline start` sent to SageMaker.
    definition = {"Parameters": [{"Name": "MaxSteps", "Type": "Integer", "DefaultValue": 60}]}
    with pytest.raises(ParameterError) as info:
        coerce_parameters(definition, {"MaxSteps": raw})
    assert f"--param MaxSteps={raw!r}: must be an integer from 1 to 1000000 (" in str(info.value)
    assert "written in plain ASCII digits, e.g. 1000 (no spaces, underscores, signs or leading zeros)" in str(
        info.value
    )
    assert coerce_parameters(definition, {"MaxSteps": "1000"})["MaxSteps"] == 1000


@pytest.mark.parametrize("raw", ["1_0.5", " 0.5", "0.5 ", "٠.5", "inf", "nan", "0x1p-1", "5e"])
def test_a_float_parameter_must_be_a_plain_decimal_number(raw):
    with pytest.raises(ParameterError) as info:
        coerce_parameters(declared(), {"Threshold": raw})
    assert f"--param Threshold={raw!r}: not a valid Float, written as a plain decimal number" in str(
        info.value
    )
    for good, value in [("0.5", 0.5), ("5e-1", 0.5), ("-2.5E+3", -2500.0), (".5", 0.5), ("3", 3.0)]:
        assert coerce_parameters(declared(), {"Threshold": good})["Threshold"] == value


def test_a_parameter_that_makes_the_run_not_fit_is_refused_before_any_call():
    """The plan holds for the run as started, not only for the config: a larger batch must fit too."""
    from config import load_config
    from pipelines.definition.parameters import (
        checks_definition,
        coerce_parameters,
        enforce_plan_with_parameters,
    )
    from training.errors import UserError

    cfg = load_config()
    values = coerce_parameters(checks_definition(cfg), {"PerDeviceTrainBatchSize": "1024"})
    with pytest.raises(UserError) as refused:
        enforce_plan_with_parameters(cfg, values, {"PerDeviceTrainBatchSize": "1024"})
    message = str(refused.value)
    assert message.startswith(
        "with --param PerDeviceTrainBatchSize=1024: the config does not fit the hardware"
    )
    assert "smallest change that fits: --param PerDeviceTrainBatchSize=" in message
    fits = coerce_parameters(checks_definition(cfg), {"MaxSteps": "20"})
    enforce_plan_with_parameters(cfg, fits, {"MaxSteps": "20"})  # nothing the plan sizes changed
