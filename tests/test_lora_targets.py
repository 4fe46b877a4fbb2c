"""LoRA target modules resolve the same way on both supported families (Llama, Qwen3), and every name that
does not resolve is a UserError naming it and the model's linear layers, on the torch backend and, before
torchrun, on the Neuron backend. The Neuron family check and the compile step's refuse other families."""

import json

import pytest

from training.backends import resolve_lora_targets
from training.errors import UserError
from training.hyperparameters import DEFAULT_TARGET_MODULES, TrainHyperparameters
from training.job import TrainJob

LINEAR = "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"
SIZES = dict(
    vocab_size=32,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
)


def _config(family, **extra):
    from transformers import LlamaConfig, Qwen3Config

    if family == "qwen3":
        return Qwen3Config(**SIZES, head_dim=8, **extra)
    return LlamaConfig(**SIZES, **extra)


def _model(family, **extra):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(_config(family, **extra))


def _job(hp, model_source="m"):
    return TrainJob(
        hp=hp,
        train_path=None,
        validation_path=None,
        model_source=model_source,
        gguf_file=None,
        model_dir=None,
        checkpoint_dir=None,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_the_default_targets_resolve_to_every_projection_of_both_families(family):
    resolved = resolve_lora_targets(_model(family), list(DEFAULT_TARGET_MODULES))
    assert set(resolved) == set(DEFAULT_TARGET_MODULES)
    assert all(len(names) == 2 for names in resolved.values())  # one per layer
    assert "model.layers.1.self_attn.q_proj" in resolved["q_proj"]
    assert not any("norm" in n for names in resolved.values() for n in names)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_apply_lora_adapts_exactly_the_resolved_layers(family):
    from training.backends.torch_backend import apply_lora

    hp = TrainHyperparameters(lora_r=2, lora_target_modules=["q_proj", "down_proj"])
    peft_model = apply_lora(_model(family), _job(hp))
    adapted = sorted({n.split(".lora_A")[0] for n, _ in peft_model.named_parameters() if ".lora_A" in n})
    assert [a.removeprefix("base_model.model.") for a in adapted] == [
        "model.layers.0.mlp.down_proj",
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.down_proj",
        "model.layers.1.self_attn.q_proj",
    ]


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_a_misspelt_target_beside_good_ones_is_named_not_skipped(family):
    # peft adapts q_proj and ignores gate_prj without a word; the fine-tune would silently train less.
    arch = "Qwen3ForCausalLM" if family == "qwen3" else "LlamaForCausalLM"
    with pytest.raises(UserError) as caught:
        resolve_lora_targets(_model(family), ["q_proj", "gate_prj"])
    assert str(caught.value) == (
        f"lora_target_modules=['q_proj', 'gate_prj'] do not match this model ({arch} has no module named "
        f"gate_prj); its linear layers are: {LINEAR}, and its embedding: embed_tokens. Set "
        "training.lora_target_modules to some of those"
    )


def test_qwen3_norms_are_refused_as_targets_naming_what_they_are():
    with pytest.raises(UserError) as caught:
        resolve_lora_targets(_model("qwen3"), ["q_proj", "q_norm", "k_norm"])
    message = str(caught.value)
    assert "q_norm is a Qwen3RMSNorm in Qwen3ForCausalLM, not a linear or embedding layer" in message
    assert "k_norm is a Qwen3RMSNorm in Qwen3ForCausalLM, not a linear or embedding layer" in message
    assert f"its linear layers are: {LINEAR}" in message
    # The same names on Llama do not exist at all.
    with pytest.raises(UserError, match="LlamaForCausalLM has no module named q_norm"):
        resolve_lora_targets(_model("llama"), ["q_norm"])


def test_the_torch_backend_refuses_before_peft_sees_the_targets():
    from training.backends.torch_backend import apply_lora

    hp = TrainHyperparameters(lora_target_modules=["q_proj", "v_prj"])
    with pytest.raises(UserError, match="Qwen3ForCausalLM has no module named v_prj"):
        apply_lora(_model("qwen3"), _job(hp))


def test_lm_head_is_refused_where_it_shares_the_embedding_weights():
    # Qwen3-0.6B and SmolLM2 tie them; a merged LoRA on lm_head would change the input embeddings too.
    with pytest.raises(UserError) as caught:
        resolve_lora_targets(_model("qwen3", tie_word_embeddings=True), ["q_proj", "lm_head"])
    assert "lm_head is the output layer of this Qwen3ForCausalLM, which shares its weights" in str(
        caught.value
    )
    assert "leave lm_head out of training.lora_target_modules" in str(caught.value)
    assert resolve_lora_targets(_model("llama", tie_word_embeddings=False), ["lm_head"]) == {
        "lm_head": ["lm_head"]
    }


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_embed_tokens_is_a_target_where_the_embeddings_are_not_tied(family):
    # Before: refused as "an Embedding, not a linear layer", though peft adapts nn.Embedding and the
    # optimum-neuron Llama example targets embed_tokens; the planner and flops.py count it.
    from training.backends.torch_backend import apply_lora

    model = _model(family, tie_word_embeddings=False)
    targets = ["embed_tokens", "q_proj"]
    assert resolve_lora_targets(model, targets)["embed_tokens"] == ["model.embed_tokens"]
    peft_model = apply_lora(model, _job(TrainHyperparameters(lora_r=2, lora_target_modules=targets)))
    adapted = {
        n.split(".lora_embedding_A")[0] for n, _ in peft_model.named_parameters() if "lora_embedding_A" in n
    }
    assert adapted == {"base_model.model.model.embed_tokens"}


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_embed_tokens_is_refused_where_it_shares_its_weights_with_the_output_layer(family):
    arch = "Qwen3ForCausalLM" if family == "qwen3" else "LlamaForCausalLM"
    with pytest.raises(UserError) as caught:
        resolve_lora_targets(_model(family, tie_word_embeddings=True), ["q_proj", "embed_tokens"])
    assert str(caught.value) == (
        f"lora_target_modules=['q_proj', 'embed_tokens']: embed_tokens is the input embedding of this {arch}, "
        "which shares its weights with the output layer (lm_head) (tie_word_embeddings=true), so merging a "
        "LoRA on it would change the output layer (lm_head) as well; leave embed_tokens out of "
        "training.lora_target_modules"
    )


# ---- the Neuron side: families and targets checked before torchrun ------------------------------------


def _saved_config(folder, family, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    _config(family, **extra).save_pretrained(folder)
    return folder


def test_the_supported_families_are_those_optimum_neuron_trains_and_exports():
    from training.neuron_sdk import (
        NEURON_INFERENCE_MODEL_TYPES,
        NEURON_TRAINING_MODEL_TYPES,
        SUPPORTED_MODEL_TYPES,
    )

    both = set(NEURON_TRAINING_MODEL_TYPES) & set(NEURON_INFERENCE_MODEL_TYPES)
    assert set(SUPPORTED_MODEL_TYPES) == {"llama", "qwen3"} and set(SUPPORTED_MODEL_TYPES) <= both


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_neuron_launcher_accepts_both_families(tmp_path, family):
    from training.backends.neuron_backend import check_base_model

    folder = _saved_config(tmp_path / family, family)
    check_base_model(_job(TrainHyperparameters(), str(folder)))


def test_neuron_launcher_refuses_a_misspelt_target_before_torchrun(tmp_path):
    from training.backends.neuron_backend import check_base_model

    folder = _saved_config(tmp_path / "q", "qwen3")
    hp = TrainHyperparameters(lora_target_modules=["q_proj", "gate_prj"])
    with pytest.raises(UserError, match="Qwen3ForCausalLM has no module named gate_prj"):
        check_base_model(_job(hp, str(folder)))


def test_neuron_launcher_refuses_another_family_naming_it(tmp_path):
    from training.backends.neuron_backend import check_base_model

    folder = tmp_path / "mistral"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    with pytest.raises(UserError) as caught:
        check_base_model(_job(TrainHyperparameters(), str(folder)))
    assert str(caught.value).startswith(
        f"{folder}/config.json: model_type 'mistral' is not supported for training on Neuron; this project "
        "supports LlamaForCausalLM (model_type llama), Qwen3ForCausalLM (model_type qwen3)"
    )


def test_neuron_launcher_refuses_qwen3_with_sliding_window(tmp_path):
    from training.backends.neuron_backend import check_base_model

    folder = _saved_config(tmp_path / "q", "qwen3", use_sliding_window=True, sliding_window=64)
    with pytest.raises(
        UserError, match="use_sliding_window is true, and optimum-neuron 0.4.5 trains Qwen3 only"
    ):
        check_base_model(_job(TrainHyperparameters(), str(folder)))


def test_an_unreadable_model_config_is_named(tmp_path):
    from training.neuron_sdk import read_model_config

    (tmp_path / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(UserError, match=r"config.json: not a readable JSON model config"):
        read_model_config(tmp_path)
    assert read_model_config(tmp_path / "absent") is None


@pytest.mark.parametrize("target", ["cpu", "inf2"])
def test_compile_refuses_a_family_the_inf2_export_does_not_take(tmp_path, target):
    # The cpu package is the local stand-in for the inf2 export: it refuses what the export would.
    from inference.compile import CompileSettings, compile_model

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="model_type 'gpt2' is not supported for inference on Neuron"):
        compile_model(model, tmp_path / "out", CompileSettings(target=target))
    assert not (tmp_path / "out").exists()
