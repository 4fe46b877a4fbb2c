import pytest

from training.errors import UserError
from training.hyperparameters import (
    TrainHyperparameters,
    echo,
    parse_sagemaker_hyperparameters,
    to_sagemaker_strings,
)


def test_round_trip_through_sagemaker_strings():
    hp = TrainHyperparameters(max_steps=9, lora_target_modules=["q_proj"], zero_1=False)
    strings = to_sagemaker_strings(hp)
    assert all(isinstance(v, str) for v in strings.values())
    assert parse_sagemaker_hyperparameters(strings, "hp.json") == hp


def test_strings_parse_numbers_bools_and_comma_lists():
    hp = parse_sagemaker_hyperparameters(
        {
            "max_steps": "12",
            "learning_rate": "1e-4",
            "zero_1": "false",
            "lora_target_modules": "q_proj, v_proj",
            "sagemaker_program": "ignored",
        },
        "hp.json",
    )
    assert (hp.max_steps, hp.learning_rate, hp.zero_1) == (12, 1e-4, False)
    assert hp.lora_target_modules == ["q_proj", "v_proj"]


def test_every_bad_value_is_reported():
    with pytest.raises(UserError) as exc:
        parse_sagemaker_hyperparameters({"max_steps": "ten", "backend": "gpu", "nope": "1"}, "hp.json")
    msg = str(exc.value)
    assert "hp.json: 3 invalid hyperparameters" in msg
    assert "max_steps: Input should be a valid integer" in msg
    assert "backend: Input should be 'auto', 'torch' or 'neuron'" in msg
    assert "nope: unknown hyperparameter" in msg


# ---- issue 15: bounds in the job, and a warmup nobody set -----------------------------------------------


def test_the_job_holds_its_hyperparameters_to_the_shared_bounds():
    # A hand-edited hyperparameters.json (or a parameter the checks missed) is refused in the job as well.
    with pytest.raises(UserError) as exc:
        parse_sagemaker_hyperparameters(
            {"max_steps": "0", "learning_rate": "nan", "lora_r": "0", "seed": "-1"}, "hyperparameters.json"
        )
    msg = str(exc.value)
    assert "hyperparameters.json: 4 invalid hyperparameters:" in msg
    assert (
        "max_steps: must be an integer from 1 to 1000000 (a fine-tune runs at least one optimizer step" in msg
    )
    assert "learning_rate: must be a finite number above 0 and at most 0.1 (LoRA fine-tunes" in msg
    assert "lora_r: must be an integer from 1 to 1024 (ranks of 8 to 64 are usual) (got '0')" in msg
    assert "seed: must be an integer from 0 to 4294967295 (numpy seeds are unsigned 32-bit integers)" in msg


def test_an_unset_warmup_is_shortened_to_fit_and_left_for_the_job_to_derive(caplog):
    caplog.set_level("INFO", logger="training.hyperparameters")
    short = TrainHyperparameters(max_steps=2)
    assert short.warmup_steps == 1
    assert "warmup_steps=1: the default 5 shortened to fit max_steps=2" in caplog.text
    # Not written down: a job whose MaxSteps parameter is 3 derives its own warmup, not this 1.
    strings = to_sagemaker_strings(short)
    assert "warmup_steps" not in strings
    assert parse_sagemaker_hyperparameters({**strings, "max_steps": "3"}, "hp.json").warmup_steps == 2
    assert parse_sagemaker_hyperparameters({**strings, "max_steps": "60"}, "hp.json").warmup_steps == 5
    # A warmup someone chose travels as given, and one the run cannot reach is an error.
    assert to_sagemaker_strings(TrainHyperparameters(max_steps=9, warmup_steps=3))["warmup_steps"] == "3"
    with pytest.raises(UserError) as exc:
        parse_sagemaker_hyperparameters({"max_steps": "2", "warmup_steps": "5"}, "hp.json")
    assert "warmup_steps (5) must be smaller than max_steps (2)" in str(exc.value)
    assert "got {" not in str(exc.value)


def test_echo_keeps_error_messages_short():
    assert echo("abc") == "'abc'"
    long = echo("x" * 10_000)
    assert long.endswith("… (10000 chars)") and len(long) < 250
    nested: list = ["y" * 50] * 10
    for _ in range(6):
        nested = [nested] * 10
    assert echo(nested).endswith("… (10 items)")
    assert len(echo(nested)) < 250
