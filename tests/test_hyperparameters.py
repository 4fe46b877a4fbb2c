import pytest

from training.errors import UserError
from training.hyperparameters import (
    TrainHyperparameters,
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
