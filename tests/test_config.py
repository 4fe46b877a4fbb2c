from pathlib import Path

import pytest

from config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


# config/prices.yaml is the price table of `mlops cost`, not a config override; tests/test_cost.py loads it.
@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "config").rglob("*.yaml") if p.name != "prices.yaml"),
    ids=lambda p: p.name,
)
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


def test_pipeline_instance_types_are_checked_against_botocore_with_key_paths(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "pipeline:\n  instances:\n    train: ml.p4d.24xlarge\n    compile: ml.inf2.xlarge\n"
        "serving:\n  instance_types: [ml.g5.xlarge]\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config([f])
    msg = str(exc.value)
    assert f"{f}:3: pipeline.instances.train: 'ml.p4d.24xlarge' is not a Trainium instance" in msg
    assert (
        f"{f}:4: pipeline.instances.compile: 'ml.inf2.xlarge' is not an instance type "
        "processing jobs accept (botocore ProcessingInstanceType); families: ml.c4"
    ) in msg
    assert "serving.instance_types: 'ml.g5.xlarge': the compiled artifact runs on Inferentia 2 only" in msg
    with pytest.raises(
        ConfigError, match="spot_max_wait_seconds=600 must be at least train_max_runtime_seconds=21600"
    ):
        load_config(overrides=["pipeline.spot=true", "pipeline.spot_max_wait_seconds=600"])


def test_pipeline_cache_duration_must_be_iso8601():
    with pytest.raises(
        ConfigError, match=r"pipeline.cache_expire_after: must be an ISO 8601 duration such as P30D"
    ):
        load_config(overrides=["pipeline.cache_expire_after=30 days"])
    assert load_config(overrides=["pipeline.cache_expire_after=PT12H"]).pipeline.cache_expire_after == "PT12H"


def test_endpoint_name_leaves_room_for_version_suffixes():
    with pytest.raises(
        ConfigError, match=r"infra.endpoint.name: must be 1-50 letters, digits or single hyphens"
    ):
        load_config(overrides=["infra.endpoint.name=bad_name"])
    assert load_config(overrides=["infra.endpoint.name=my-endpoint"]).endpoint_name == "my-endpoint"


def test_a_bare_yaml_off_for_local_mlflow_means_off(tmp_path):
    override = tmp_path / "mine.yaml"
    override.write_text("local:\n  mlflow: off\n")
    assert load_config([override]).local.mlflow == "off"
    assert load_config(overrides=["local.mlflow=off"]).local.mlflow == "off"


def test_an_endpoint_starting_above_its_autoscaling_ceiling_is_refused():
    with pytest.raises(ConfigError, match="initial_instance_count=3 is above max_instance_count=2"):
        load_config(overrides=["infra.endpoint.initial_instance_count=3"])
