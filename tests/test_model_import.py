"""``mlops model import``: a tiny Llama saved by transformers, imported into moto's S3 and into a local
store; the Hub path with snapshot_download replaced (nothing here reaches the Hub), and every refusal's
message."""

import json
import shutil

import boto3
import pytest
import yaml
from moto import mock_aws
from typer.testing import CliRunner

from config import load_config
from pipelines.cli.app import app
from pipelines.operate import model_import
from training.fingerprints import folder_sha256

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
BUCKET = f"llm-neuron-mlops-data-{ACCOUNT}-{REGION}"
runner = CliRunner()


def mlops(*args, env=None):
    return runner.invoke(app, list(args), env={"COLUMNS": "400", **(env or {})})


def _save_tokenizer(folder):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(32)}
    PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t1", pad_token="t2"
    ).save_pretrained(folder)


def _save_tiny(folder, config_class, model_class, **extra):
    """A one-layer model of the family, saved as safetensors with the test tokenizer."""
    config = config_class(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        **extra,
    )
    model_class(config).save_pretrained(folder, safe_serialization=True)
    _save_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    return _save_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", LlamaConfig, LlamaForCausalLM)


@pytest.fixture
def llama(saved_llama, tmp_path):
    """A fresh copy, plus what a real folder often holds and must not be imported."""
    folder = tmp_path / "tiny-llama"
    shutil.copytree(saved_llama, folder)
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "README.md").write_text("# a model card")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.00.pth").write_bytes(b"pickle")
    return folder


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def _keys(s3, prefix="base-models/"):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


IMPORTED = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


# ---- into S3 ----------------------------------------------------------------------------------------


def test_import_a_folder_uploads_the_safetensors_model_under_its_sha_and_prints_the_uri(aws, llama, tmp_path):
    result = mlops("model", "import", str(llama))
    assert result.exit_code == 0, result.output
    keys = _keys(aws)
    sha = keys[0].split("/")[2]
    assert {k.rsplit("/", 1)[1] for k in keys} == IMPORTED  # no .bin, no README, nothing in original/
    assert all(k.startswith(f"base-models/tiny-llama/{sha}/") for k in keys)
    # The prefix names the content: the fine-tune's folder_sha256 of the downloaded channel is the same.
    channel = tmp_path / "channel"
    channel.mkdir()
    for key in keys:
        aws.download_file(BUCKET, key, str(channel / key.rsplit("/", 1)[1]))
    assert folder_sha256(channel) == sha
    assert (
        f"set pipeline.base_model_s3_uri to s3://${{DataBucket}}/base-models/tiny-llama/{sha}/"
        in result.output
    )
    assert f"stored at s3://{BUCKET}/base-models/tiny-llama/{sha}/" in result.output
    assert "LlamaForCausalLM tiny-llama: 6 files" in result.output
    # Not a terminal: one plain line per file, config.json last (a cut upload is no loadable model).
    uploaded = [line for line in result.output.splitlines() if line.startswith("uploaded ")]
    assert len(uploaded) == 6 and uploaded[-1].startswith("uploaded config.json (6/6")


def test_a_second_import_of_the_same_content_uploads_nothing(aws, llama):
    first = mlops("model", "import", str(llama), "--name", "mine")
    assert first.exit_code == 0 and "uploading 6 files" in first.output
    again = mlops("model", "import", str(llama), "--name", "mine")
    assert again.exit_code == 0, again.output
    assert "already stored (same content)" in again.output and "uploading" not in again.output


def test_upload_reports_progress_in_bytes(aws, llama):
    from config import ProjectConfig

    class Recorder:
        def __init__(self):
            self.begun, self.sent, self.done = None, 0, []

        def begin(self, files, total_bytes):
            self.begun = (files, total_bytes)

        def advance(self, transferred):
            self.sent += transferred

        def file_done(self, name, size):
            self.done.append(name)

    progress = Recorder()
    imported = model_import.import_model(ProjectConfig(), str(llama), progress=progress, s3=aws)
    assert progress.begun == (6, imported.bytes) and progress.sent == imported.bytes
    assert progress.done[-1] == "config.json" and len(progress.done) == 6


def test_plain_progress_prints_a_line_per_file_and_per_tenth_of_the_bytes(capsys):
    from pipelines.cli.model import LineProgress

    progress = LineProgress()
    progress.begin(2, 100)
    for _ in range(7):
        progress.advance(5)  # 35 bytes: 10%, 20%, 30%
    progress.file_done("model.safetensors", 35)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "uploading 2 files, 0.00 GiB"
    assert [line.split()[0] for line in lines[1:4]] == ["10%", "20%", "30%"]
    assert lines[4].startswith("uploaded model.safetensors (1/2,") and len(lines) == 5


def test_write_override_sets_the_key_and_keeps_the_other_keys(aws, llama, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("training:\n  learning_rate: 5e-4\npipeline:\n  spot: true\n")
    override.chmod(0o644)
    result = mlops("model", "import", str(llama), "--write-override", str(override))
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(override.read_text())
    sha = _keys(aws)[0].split("/")[2]
    uri = f"s3://${{DataBucket}}/base-models/tiny-llama/{sha}/"
    shape = _shape_of(llama)
    assert written == {
        "training": {"learning_rate": 0.0005},
        "pipeline": {"spot": True, "base_model_s3_uri": uri},
        "model": {"architecture": shape},
    }
    assert override.stat().st_mode & 0o777 == 0o644
    assert load_config([override], []).pipeline.base_model_s3_uri == uri
    assert f"pipeline.base_model_s3_uri and model.architecture set in {override}" in result.output
    created = tmp_path / "new" / "model.yaml"
    assert mlops("model", "import", str(llama), "--write-override", str(created)).exit_code == 0
    assert yaml.safe_load(created.read_text()) == {
        "pipeline": {"base_model_s3_uri": uri},
        "model": {"architecture": shape},
    }


ARCHITECTURE_KEYS = (
    "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
    "vocab_size", "max_position_embeddings", "head_dim", "tie_word_embeddings", "model_type",
)  # fmt: skip


def _shape_of(folder):
    """model.architecture as the folder's config.json has it (head_dim only where it is set)."""
    config = json.loads((folder / "config.json").read_text())
    return {key: config[key] for key in ARCHITECTURE_KEYS if key in config}


def test_write_override_gives_the_planner_the_imported_models_architecture(llama, tmp_path):
    # Before: only pipeline.base_model_s3_uri was written, so `mlops plan` with the override still sized
    # the default model.architecture (SmolLM2-135M's) instead of the model imported.
    override = tmp_path / "override.yaml"
    store = f"local.store_dir={tmp_path / 'store'}"
    result = mlops(
        "model", "import", str(llama), "--local", "--set", store, "--write-override", str(override)
    )
    assert result.exit_code == 0, result.output
    shape = _shape_of(llama)
    assert shape["head_dim"] == 8 and shape["tie_word_embeddings"] is False  # the default's are None, true
    assert load_config([override], []).model.architecture.model_dump() == shape
    printed = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in shape.items())
    assert f"model.architecture: {printed}" in result.output


def test_head_dim_is_left_out_where_config_json_has_none(llama, tmp_path):
    config = json.loads((llama / "config.json").read_text())
    del config["head_dim"]
    (llama / "config.json").write_text(json.dumps(config))
    override = tmp_path / "override.yaml"
    # head_dim from a model imported before into the same file must not stay beside this one's shape.
    override.write_text("model:\n  architecture:\n    head_dim: 128\n")
    store = f"local.store_dir={tmp_path / 'store'}"
    result = mlops(
        "model", "import", str(llama), "--local", "--set", store, "--write-override", str(override)
    )
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(override.read_text())["model"]["architecture"]
    assert "head_dim" not in written and written == _shape_of(llama)
    architecture = load_config([override], []).model.architecture
    assert architecture.head_dim is None and architecture.num_hidden_layers == config["num_hidden_layers"]


def test_without_write_override_the_architecture_is_printed_with_what_to_set(llama, tmp_path):
    result = mlops("model", "import", str(llama), "--local", "--set", f"local.store_dir={tmp_path}")
    assert result.exit_code == 0, result.output
    assert "model.architecture: num_hidden_layers=1, hidden_size=16, num_attention_heads=2" in result.output
    assert "and model.architecture to the values above, for mlops plan" in result.output


def test_a_shape_outside_the_schema_is_refused_naming_the_key(llama):
    config = json.loads((llama / "config.json").read_text())
    config["num_hidden_layers"] = 5000
    (llama / "config.json").write_text(json.dumps(config))
    message = _refused(str(llama))
    assert f"{llama / 'config.json'}: the model's shape is outside what model.architecture takes" in message
    assert "num_hidden_layers: Input should be less than or equal to 1024" in message


def test_write_override_refuses_a_file_that_is_no_override(aws, llama, tmp_path):
    override = tmp_path / "list.yaml"
    override.write_text("- a\n- b\n")
    result = mlops("model", "import", str(llama), "--write-override", str(override))
    assert result.exit_code == 2
    assert (
        f"--write-override {override}: expected a YAML mapping with `pipeline:` and `model:` mappings"
        in " ".join(result.output.split())
    )
    assert override.read_text() == "- a\n- b\n"


# ---- into the local store ---------------------------------------------------------------------------


def test_import_local_publishes_into_the_local_store(llama, tmp_path):
    store = tmp_path / "store"
    result = mlops("model", "import", str(llama), "--local", "--set", f"local.store_dir={store}")
    assert result.exit_code == 0, result.output
    [stored] = list((store / "s3" / "local-data" / "base-models" / "tiny-llama").iterdir())
    assert {p.name for p in stored.iterdir()} == IMPORTED
    assert folder_sha256(stored) == stored.name
    uri = f"s3://local-data/base-models/tiny-llama/{stored.name}/"
    assert f"stored at {uri}" in result.output
    assert f"mlops run --local --param BaseModelS3Uri={uri}" in result.output
    assert (
        f"set pipeline.base_model_s3_uri to s3://${{DataBucket}}/base-models/tiny-llama/{stored.name}/"
        in (result.output)
    )
    again = mlops("model", "import", str(llama), "--local", "--set", f"local.store_dir={store}")
    assert "already stored (same content)" in again.output


def _save_qwen3(tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return _save_tiny(tmp_path / "tiny-qwen3", Qwen3Config, Qwen3ForCausalLM, head_dim=8)


def test_a_qwen3_model_is_accepted(tmp_path):
    folder = _save_qwen3(tmp_path)
    override = tmp_path / "override.yaml"
    result = mlops(
        "model", "import", str(folder), "--local", "--set", f"local.store_dir={tmp_path / 's'}",
        "--write-override", str(override),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Qwen3ForCausalLM tiny-qwen3: " in result.output
    assert load_config([override], []).model.architecture.model_dump() == _shape_of(folder)


@pytest.mark.parametrize("dot", [".", "./"])
def test_the_current_folder_is_named_after_itself(llama, tmp_path, monkeypatch, dot):
    # Before: Path('.').name is '', so `mlops model import .` failed with "--name '': not usable".
    monkeypatch.chdir(llama)
    result = mlops("model", "import", dot, "--local", "--set", f"local.store_dir={tmp_path / 'store'}")
    assert result.exit_code == 0, result.output
    assert "LlamaForCausalLM tiny-llama: " in result.output


# ---- refusals of the source ---------------------------------------------------------------------------


def _refused(*args):
    result = mlops("model", "import", *args)
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())  # the message, unwrapped


def test_a_missing_folder_is_refused(tmp_path):
    assert f"{tmp_path / 'nope'}: no such folder; give a save_pretrained() folder or a Hub id" in _refused(
        str(tmp_path / "nope")
    )


def test_a_folder_without_config_json_is_refused(llama):
    (llama / "config.json").unlink()
    assert f"{llama}: no config.json, so this is not a Hugging Face model folder" in _refused(str(llama))


def test_a_folder_of_pickles_is_refused_with_how_to_convert(llama):
    (llama / "model.safetensors").rename(llama / "pytorch_model.bin")
    message = _refused(str(llama))
    assert (
        f"{llama} holds only pickled weights (pytorch_model.bin, training_args.bin), no *.safetensors"
        in message
    )
    assert "pickles run code when loaded, so they are not imported" in message
    assert "save_pretrained('converted', safe_serialization=True)" in message


def test_an_unsupported_architecture_is_refused_naming_what_was_found_and_what_is_supported(llama):
    config = json.loads((llama / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (llama / "config.json").write_text(json.dumps(config))
    message = _refused(str(llama))
    assert f"{llama / 'config.json'}: model_type 'mistral' is not supported for training on Neuron" in message
    assert "LlamaForCausalLM (model_type llama), Qwen3ForCausalLM (model_type qwen3)" in message


def test_a_qwen3_with_sliding_window_is_refused_as_training_would(tmp_path):
    # Before: import accepted it, and the fine-tune refused it only once launched on Trainium.
    folder = _save_qwen3(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["use_sliding_window"] = True
    (folder / "config.json").write_text(json.dumps(config))
    message = _refused(str(folder))
    assert f"{folder / 'config.json'}: use_sliding_window is true" in message
    assert "set use_sliding_window to false in that config.json" in message


def test_a_llama_that_is_no_causal_lm_is_refused(llama):
    config = json.loads((llama / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (llama / "config.json").write_text(json.dumps(config))
    assert "architectures ['LlamaForSequenceClassification'] is not supported" in _refused(str(llama))


def test_a_config_json_that_is_not_json_names_its_line(llama):
    (llama / "config.json").write_text('{\n  "model_type": "llama",\n  oops\n}')
    assert f"{llama / 'config.json'}:3: not valid JSON" in _refused(str(llama))


def test_a_folder_without_a_tokenizer_is_refused(llama):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (llama / name).unlink()
    assert "no tokenizer (tokenizer.json or tokenizer.model or vocab.json)" in _refused(str(llama))


def test_a_sharded_model_missing_a_shard_is_refused(llama):
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (llama / "model.safetensors").rename(llama / "model-00001-of-00002.safetensors")
    (llama / "model.safetensors.index.json").write_text(json.dumps(index))
    assert (
        "model.safetensors.index.json names shard(s) that are not there: model-00002-of-00002.safetensors"
        in (_refused(str(llama)))
    )


def test_revision_with_a_folder_and_a_bad_name_are_refused(llama):
    assert f"--revision 'v1' applies to a Hub id; {str(llama)!r} is a local folder" in _refused(
        str(llama), "--revision", "v1"
    )
    assert "--name '../up': not usable as an S3 key segment" in _refused(str(llama), "--name", "../up")


# ---- the Hub: snapshot_download replaced --------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch, saved_llama):
    """snapshot_download as a stand-in: records its arguments and answers with the tiny model, or raises
    what a test sets. No call reaches huggingface.co."""
    import huggingface_hub

    calls, raises = [], []

    def snapshot_download(**kwargs):
        calls.append(kwargs)
        if raises:
            raise raises[0]
        return str(saved_llama)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return calls, raises


def test_hub_import_downloads_only_safetensors_config_and_tokenizer(hub, monkeypatch, tmp_path):
    calls, _ = hub
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    result = mlops(
        "model", "import", "meta-llama/Llama-3.2-1B", "--revision", "v1.0", "--local",
        "--set", f"local.store_dir={tmp_path}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["repo_id"] == "meta-llama/Llama-3.2-1B" and call["revision"] == "v1.0"
    assert call["token"] == "hf_secret"
    assert "*.safetensors" in call["allow_patterns"] and "config.json" in call["allow_patterns"]
    assert "tokenizer.json" in call["allow_patterns"] and "generation_config.json" in call["allow_patterns"]
    assert not any(p.endswith((".bin", ".pt", ".pth")) for p in call["allow_patterns"])
    assert call["ignore_patterns"] == ["*/*"]
    assert "LlamaForCausalLM Llama-3.2-1B: " in result.output  # the name defaults to the repo's


def test_hub_import_without_hf_token_lets_huggingface_hub_use_its_login(hub, tmp_path):
    calls, _ = hub
    assert (
        mlops("model", "import", "owner/model", "--local", "--set", f"local.store_dir={tmp_path}").exit_code
        == 0
    )
    assert calls[0]["token"] is None and calls[0]["revision"] is None


def _hub_refusal(hub, error, *args):
    from huggingface_hub import errors

    hub[1].append(getattr(errors, error)("from the Hub"))
    return _refused("meta-llama/Llama-3.1-8B", *args)


def test_a_gated_hub_model_says_to_accept_the_license_and_set_hf_token(hub):
    message = _hub_refusal(hub, "GatedRepoError")
    assert (
        "meta-llama/Llama-3.1-8B is a gated model: accept its license on https://huggingface.co/meta-llama/Llama-3.1-8B"
        in message
    )
    assert "set HF_TOKEN to a token of that account" in message


def test_a_missing_hub_repo_says_to_check_the_id_and_the_token(hub, monkeypatch):
    message = _hub_refusal(hub, "RepositoryNotFoundError")
    assert "no Hugging Face Hub repo 'meta-llama/Llama-3.1-8B': check the id" in message
    assert "if it is private, set HF_TOKEN" in message
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    hub[1].clear()
    assert "HF_TOKEN is set, but its account cannot see it" in _hub_refusal(hub, "RepositoryNotFoundError")


def test_a_missing_hub_revision_says_what_to_give(hub):
    message = _hub_refusal(hub, "RevisionNotFoundError", "--revision", "v9")
    assert "meta-llama/Llama-3.1-8B has no revision 'v9': give a branch, tag or commit" in message


def test_an_unreachable_hub_says_so(hub):
    message = _hub_refusal(hub, "LocalEntryNotFoundError")
    assert (
        "cannot download meta-llama/Llama-3.1-8B from the Hugging Face Hub and it is not in the local cache"
        in message
    )


def test_a_hub_repo_without_safetensors_is_refused(hub, monkeypatch, tmp_path):
    folder = tmp_path / "snapshot"  # what snapshot_download leaves of a repo that has only pytorch_model.bin
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    _save_tokenizer(folder)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: str(folder))
    message = _refused("owner/pickled")
    assert "Hub repo owner/pickled: no *.safetensors weights (only safetensors are imported" in message
    # The conversion loads from the Hub: the cached snapshot has no weights (pickles were not downloaded).
    assert "AutoModelForCausalLM.from_pretrained('owner/pickled').save_pretrained('converted'" in message
    assert str(folder) not in message
    message = _refused("owner/pickled", "--revision", "v2")
    assert "AutoTokenizer.from_pretrained('owner/pickled', revision='v2').save_pretrained(" in message


# ---- AWS -------------------------------------------------------------------------------------------------


def test_a_missing_data_bucket_says_to_deploy(aws, llama):
    aws.delete_bucket(Bucket=BUCKET)
    result = mlops("model", "import", str(llama))
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert (
        f"the data bucket {BUCKET} does not exist: deploy the platform first (`cdk deploy --all`)" in message
    )


def test_no_aws_credentials_is_one_line_saying_what_to_do(llama, monkeypatch, tmp_path):
    for key in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):  # fmt: skip
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = mlops("model", "import", str(llama), "--set", "project.account='111122223333'")
    assert result.exit_code == 1, result.output
    assert "error: no AWS credentials found: run `aws configure` or `aws sso login`" in result.output
