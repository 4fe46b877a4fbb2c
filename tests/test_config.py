from pathlib import Path

import pytest

from config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    load_config([path])


def test_all_errors_reported_at_once_with_location(tmp_path):
    f = tmp_path / "o.yaml"
    f.write_text("training:\n  max_steps: 0\n  bogus: 1\nproject:\n  region: nowhere\n")
    with pytest.raises(ConfigError) as exc:
        load_config([f], ["training.backend=gpu"])
    msg = str(exc.value)
    assert f"{f}:2: training.max_steps: Input should be greater than 0" in msg
    assert f"{f}:3: training.bogus: unknown key; allowed here: base_model" in msg
    assert f"{f}:5: project.region: must look like an AWS region" in msg
    assert "--set training.backend: training.backend: Input should be 'auto', 'torch' or 'neuron'" in msg
    assert len(exc.value.problems) == 4


def test_set_parses_yaml_values_and_lists():
    cfg = load_config(overrides=["training.max_steps=7", "training.lora_target_modules=[q_proj, v_proj]"])
    assert cfg.training.max_steps == 7
    assert cfg.training.lora_target_modules == ["q_proj", "v_proj"]


def test_bad_yaml_and_bad_set_syntax(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("training:\n  max_steps: [1\n")
    with pytest.raises(ConfigError) as exc:
        load_config([f], ["nokey"])
    assert "not valid YAML" in str(exc.value)
    assert "--set nokey: expected dotted.key=value" in str(exc.value)


def test_duplicate_key_is_an_error(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("training:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3: training.seed: duplicate key"):
        load_config([f])
