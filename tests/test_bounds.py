"""One set of bounds (training/bounds.py) holds the config, the pipeline parameters and the training job.

Issue 15, item 15: `mlops pipeline start` took MaxSteps=0, LearningRate=5, LoraR=0, TrainInstanceCount=0 and
QualityThreshold=nan; the config took a threshold of .nan, .inf and -5, and `training.max_steps=true` as 1.
"""

import math

import pytest
from pydantic import BaseModel, WrapValidator

from config import ConfigError, ProjectConfig, load_config
from pipelines.definition.parameters import (
    PARAMETER_BOUNDS,
    ParameterError,
    checks_definition,
    coerce_parameters,
)
from training.bounds import BOUNDS
from training.errors import UserError
from training.hyperparameters import TrainHyperparameters, parse_sagemaker_hyperparameters

# Where each parameter's bound shows up in the config (the parameter's default comes from there).
CONFIG_KEYS = {
    **{
        param: f"training.{key}"
        for param, key in PARAMETER_BOUNDS.items()
        if key in TrainHyperparameters.model_fields
    },
    "TrainInstanceCount": "pipeline.instances.train_count",
    "QualityThreshold": "pipeline.quality_gate.threshold",
}


def start(**overrides):
    """What `mlops pipeline start --param ...` checks before any AWS call."""
    return coerce_parameters(checks_definition(load_config()), {k: str(v) for k, v in overrides.items()})


def outside(bound):
    """Values just outside the bound on each side, as text (how --param and --set give them)."""
    step = 1 if bound.integer else max(abs(bound.high), 1) * 0.5
    below = bound.low if bound.low_open else bound.low - step
    return [
        str(int(below) if bound.integer else below),
        str(int(bound.high + step) if bound.integer else bound.high + step),
    ]


def inside(bound):
    low = bound.low + (1e-6 if bound.low_open else 0)
    return [str(int(v)) if bound.integer else repr(float(v)) for v in (low, bound.high)]


def test_every_parameter_with_a_number_has_a_bound_and_a_config_key():
    numeric = {
        s["Name"] for s in checks_definition(load_config())["Parameters"] if s["Type"] in ("Integer", "Float")
    }
    assert numeric == set(PARAMETER_BOUNDS) == set(CONFIG_KEYS)


@pytest.mark.parametrize("param", sorted(PARAMETER_BOUNDS))
def test_a_value_out_of_range_is_refused_by_config_parameter_and_job_alike(param):
    bound = BOUNDS[PARAMETER_BOUNDS[param]]
    key = CONFIG_KEYS[param]
    for raw in outside(bound):
        with pytest.raises(ParameterError) as by_param:
            start(**{param: raw})
        assert f"--param {param}='{raw}': {bound.requirement()}" in str(by_param.value)
        with pytest.raises(ConfigError) as by_config:
            load_config(overrides=[f"{key}={raw}"])
        assert f"--set {key}: {key}: {bound.requirement()} (got " in str(by_config.value)
        if key.startswith("training."):
            name = key.removeprefix("training.")
            with pytest.raises(UserError, match=f"{name}: must be {bound.describe()}"):
                parse_sagemaker_hyperparameters({name: raw}, "hyperparameters.json")


@pytest.mark.parametrize("param", sorted(PARAMETER_BOUNDS))
def test_the_edges_of_a_range_are_accepted_by_all_three(param):
    bound = BOUNDS[PARAMETER_BOUNDS[param]]
    key = CONFIG_KEYS[param]
    for raw in inside(bound):
        assert start(**{param: raw})[param] == pytest.approx(float(raw))
        load_config(overrides=[f"{key}={raw}"])
        if key.startswith("training."):
            parse_sagemaker_hyperparameters({key.removeprefix("training."): raw}, "hyperparameters.json")


def test_the_values_the_tester_started_a_pipeline_with_are_all_refused_at_once():
    with pytest.raises(ParameterError) as info:
        start(MaxSteps=-3, LearningRate=5, LoraR=0, TrainInstanceCount=0, QualityThreshold="nan")
    message = str(info.value)
    assert (
        "--param MaxSteps='-3': must be an integer from 1 to 1000000 (a fine-tune runs at least one"
        in message
    )
    assert (
        "--param LearningRate='5': must be a finite number above 0 and at most 0.1 (LoRA fine-tunes"
        in message
    )
    assert "--param LoraR='0': must be an integer from 1 to 1024 (ranks of 8 to 64 are usual)" in message
    assert "--param TrainInstanceCount='0': must be an integer from 1 to 64 (Trainium instances" in message
    assert "--param QualityThreshold='nan': must be a finite number at least -1 and at most 1" in message
    with pytest.raises(ParameterError, match=r"--param MaxSteps='0': must be an integer from 1 to 1000000"):
        start(MaxSteps=0)


@pytest.mark.parametrize("raw", [".nan", ".inf", "-.inf", "-5", "1.5"])
def test_a_quality_threshold_that_no_metric_can_reach_is_refused_in_config(raw):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"pipeline.quality_gate.threshold={raw}"])
    message = str(info.value)
    assert "pipeline.quality_gate.threshold: must be a finite number at least -1 and at most 1 (" in message
    assert (
        "exact_match is a fraction from 0 to 1, exact_match_improvement a difference from -1 to 1" in message
    )


def test_a_yaml_boolean_is_not_a_number(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["training.max_steps=true"])
    assert (
        "--set training.max_steps: training.max_steps: must be an integer from 1 to 1000000, "
        "not a true/false value (a fine-tune runs"
    ) in str(info.value)
    # The sections that only YAML feeds are strict: a boolean is no integer there either.
    with pytest.raises(
        ConfigError, match=r"pipeline.volume_size_gb: Input should be a valid integer \(got True\)"
    ):
        load_config(overrides=["pipeline.volume_size_gb=true"])
    # ... and YAML integers, and the job's strings, still are.
    f = tmp_path / "ok.yaml"
    f.write_text("training:\n  max_steps: 7\npipeline:\n  volume_size_gb: 50\n")
    assert load_config([f]).training.max_steps == 7
    assert parse_sagemaker_hyperparameters({"max_steps": "7"}, "hp.json").max_steps == 7


def test_bound_messages_say_what_to_do():
    for name, bound in BOUNDS.items():
        assert bound.advice, name
        assert bound.problem(bound.high) is None
        assert (
            bound.problem(math.nan) == bound.requirement() == f"must be {bound.describe()} ({bound.advice})"
        )
        assert ";" not in bound.requirement()  # the CLI joins problems with "; "
        assert bound.problem(True) is not None


def _numeric_fields(model, prefix=""):
    """(dotted key, field) of every int or float field, through the nested sections."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _numeric_fields(field.annotation, f"{prefix}{name}.")
        elif field.annotation in (int, float):
            yield f"{prefix}{name}", field


def test_no_float_in_the_config_can_hold_nan_and_every_hyperparameter_number_is_bounded():
    # A NaN that reaches the definition is written as `NaN`, which is not JSON: every float has a bound.
    floats = [(key, field) for key, field in _numeric_fields(ProjectConfig) if field.annotation is float]
    assert floats
    for key, field in floats:
        assert any(isinstance(m, WrapValidator) for m in field.metadata), f"{key} is a float with no bound"
    for name, field in TrainHyperparameters.model_fields.items():
        if field.annotation in (int, float):
            assert name in BOUNDS, f"training.{name} has no entry in training/bounds.py"
