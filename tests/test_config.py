from pathlib import Path

import pytest
import yaml

from config import ConfigError, load_config
from config.loader import locate_keys

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
    assert f"{f}:2: training.max_steps: must be an integer from 1 to 1000000 (" in msg
    assert f"{f}:3: training.bogus: unknown key; allowed here: base_model" in msg
    assert f"{f}:5: project.region: not a region where SageMaker runs" in msg
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
    assert (
        "serving.instance_types: 'ml.g5.xlarge': the project serves a Neuron export on Inferentia 2 (ml.inf2.*) "
        "or Trainium 2 (ml.trn2.48xlarge) only"
    ) in msg
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


# ---- issue 15: values checked before a paid run, and errors that say what to do -------------------------


def test_a_region_botocore_does_not_know_is_refused():
    # item 15: zz-fake-1 has the shape of a region; botocore's endpoints.json says there is no such region.
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["project.region=zz-fake-1"])
    message = str(info.value)
    assert "--set project.region: project.region: not a region where SageMaker runs, by botocore" in message
    assert (
        "check the spelling, or upgrade botocore if the region is newer than it (got 'zz-fake-1')" in message
    )
    gov = load_config(
        overrides=[
            "project.region=us-gov-west-1",
            "infra.availability_zones=[us-gov-west-1a, us-gov-west-1b]",
        ]
    )
    assert gov.project.region == "us-gov-west-1"


def test_zones_outside_the_region_say_what_to_set():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["project.region=eu-west-1"])
    assert (
        "--set project.region: (top level): infra.availability_zones ['us-east-1a', 'us-east-1b'] are not in "
        "project.region=eu-west-1: set them to zones of eu-west-1, e.g. [eu-west-1a, eu-west-1b]"
    ) in str(info.value)


def test_a_cpu_training_instance_is_refused_with_the_trainium_types_to_use():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["pipeline.instances.train=ml.t2.nano"])
    assert (
        "pipeline.instances.train: 'ml.t2.nano' is not a Trainium instance that training jobs accept "
        "(botocore TrainingInstanceType); the fine-tune step runs the Neuron backend: use one of ml.trn1.2xlarge"
    ) in str(info.value)


def test_an_unquoted_account_id_gets_the_quoting_hint():
    # item 16: YAML reads 000000000000 as the number 0; the hint to quote it used to be lost.
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["project.account=000000000000"])
    assert (
        "--set project.account: project.account: YAML read the account id as the number 0, which loses leading "
        'zeros: quote the 12 digits, account: "012345678901" in a file, or --set '
        "'project.account=\"012345678901\"' (got 0)"
    ) in str(info.value)
    assert load_config(overrides=['project.account="000000000000"']).project.account == "000000000000"


def test_a_directory_as_config_is_a_clear_error(tmp_path):
    # item 14: this was an IsADirectoryError traceback.
    with pytest.raises(ConfigError) as info:
        load_config([tmp_path])
    assert (
        f"{tmp_path}: is a directory; --config takes a YAML file, e.g. --config {tmp_path}/mine.yaml"
        in str(info.value)
    )


def test_a_number_past_pythons_digit_limit_is_a_clear_error(tmp_path):
    # item 14: `--set training.max_steps=<5000 digits>` raised ValueError from int() inside PyYAML.
    digits = "9" * 5000
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"training.max_steps={digits}"])
    assert (
        "--set training.max_steps: a number longer than Python reads (4300 digits); no setting takes"
        in str(info.value)
    )
    f = tmp_path / "big.yaml"
    f.write_text(f"training:\n  seed: {digits}\n")
    with pytest.raises(ConfigError, match=r"big.yaml: a number longer than Python reads"):
        load_config([f])


def test_a_cross_field_error_names_the_flags_and_does_not_dump_the_config():
    # item 16: the error echoed the whole `training` section (and at the top level, the whole config).
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["training.max_steps=2", "training.warmup_steps=5"])
    message = str(info.value)
    assert (
        "--set training.max_steps, --set training.warmup_steps: training: warmup_steps (5) must be smaller "
        "than max_steps (2): the run would end before reaching its peak learning rate; lower warmup_steps to "
        "at most 1, or leave it unset to get min(5, max_steps - 1)"
    ) in message
    assert "base_model" not in message and "got {" not in message


def test_the_default_warmup_fits_a_short_run_that_never_set_it():
    # item 16: warmup_steps=5 in the defaults made max_steps=2 invalid for a user who never set warmup.
    assert load_config(overrides=["training.max_steps=2"]).training.warmup_steps == 1
    assert load_config(overrides=["training.max_steps=1"]).training.warmup_steps == 0
    assert load_config().training.warmup_steps == 5


def test_a_huge_yaml_alias_value_is_echoed_short(tmp_path):
    # item 16: a YAML alias chain was echoed at 1.7 MB.
    lines = ['a0: &a0 ["' + "x" * 60 + '", "' + "y" * 60 + '"]']
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("project:\n  name: *a7")
    f = tmp_path / "alias.yaml"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config([f])
    (name,) = [p for p in info.value.problems if "project.name" in p]
    assert name.endswith("… (10 items))")
    assert len(name) < 400


def test_a_mapping_alias_chain_is_walked_once(tmp_path):
    # Each mapping repeats the one before ten times: 10**7 key paths if every alias were walked again.
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: 1" for j in range(10)) + "}"]
    for i in range(1, 8):
        lines.append(f"m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(10)) + "}")
    lines.append("training: *m7")
    f = tmp_path / "chain.yaml"
    f.write_text("\n".join(lines) + "\n")
    where: dict = {}
    locate_keys(yaml.compose(f.read_text()), f, (), where, [])
    assert len(where) < 100  # each written key once, not every path through the aliases
    with pytest.raises(ConfigError) as info:
        load_config([f])
    assert f"{f}:9: training.k0: unknown key; allowed here: base_model" in str(info.value)


# ---- issue 15, review: YAML 1.2 floats and deep --set values ---------------------------------------------


def test_exponent_floats_are_numbers_in_files_and_set(tmp_path):
    # PyYAML reads YAML 1.1, where 5e-1 (no dot, or an unsigned exponent) is a string, which the strict
    # schema refused ("Input should be a valid number") while --param QualityThreshold=5e-1 was accepted.
    cfg = load_config(overrides=["pipeline.quality_gate.threshold=5e-1", "training.learning_rate=1e-4"])
    assert (cfg.pipeline.quality_gate.threshold, cfg.training.learning_rate) == (0.5, 1e-4)
    f = tmp_path / "o.yaml"
    f.write_text("pipeline:\n  quality_gate:\n    threshold: 5e-1\n")
    assert load_config([f]).pipeline.quality_gate.threshold == 0.5


@pytest.mark.parametrize(
    ("text", "value"),
    [("5e-1", 0.5), ("1e-4", 1e-4), ("-2.5E+3", -2500.0), ("1.5e3", 1500.0), ("1e", "1e"), ("e5", "e5")],
)
def test_the_config_reader_takes_yaml_1_2_floats_only(text, value):
    from config.loader import yaml_load

    loaded = yaml_load(f"v: {text}")["v"]
    assert loaded == value and type(loaded) is type(value)
    assert yaml.safe_load("v: 5e-1")["v"] == "5e-1"  # PyYAML's own SafeLoader is left as it was


def test_a_set_value_nested_too_deeply_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["training.max_steps=" + "[" * 5000])
    assert "--set training.max_steps: the value nests lists or mappings too deeply to read" in str(info.value)


def test_a_file_nested_too_deeply_is_a_config_error(tmp_path):
    f = tmp_path / "o.yaml"
    f.write_text("training:\n  max_steps: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config([f])
    assert f"{f}: the file nests lists or mappings too deeply to read" in str(info.value)


def test_model_architecture_defaults_are_smollm2_and_shape_errors_name_config_json():
    # issue 16: the planner sizes memory from model.architecture; the defaults are SmolLM2-135M's.
    a = load_config().model.architecture
    layers_and_heads = (a.num_hidden_layers, a.hidden_size, a.num_attention_heads, a.num_key_value_heads)
    assert layers_and_heads == (30, 576, 9, 3)
    assert (a.intermediate_size, a.vocab_size, a.max_position_embeddings) == (1536, 49152, 8192)
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["model.architecture.num_key_value_heads=2"])
    assert (
        "--set model.architecture.num_key_value_heads: model.architecture: num_attention_heads=9 is not a "
        "multiple of num_key_value_heads=2: copy both from the model's config.json"
    ) in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["model.architecture.hidden_size=577"])
    message = str(exc.value)
    assert "hidden_size=577 is not a multiple of num_attention_heads=9 and head_dim is unset" in message
    assert load_config(overrides=["plan.enforce=false"]).plan.enforce is False
