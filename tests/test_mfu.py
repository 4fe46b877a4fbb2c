"""MFU in the training report: the planner's FLOPs per token over a peak measured on this machine."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from training.flops import DecoderShape, decoder_shape, flops_per_token
from training.mfu import measured_matmul_peak, mfu_report

# SmolLM2-135M's config.json values (the planner's default, config/default.yaml model.architecture).
SMOLLM2 = SimpleNamespace(
    num_hidden_layers=30,
    hidden_size=576,
    num_attention_heads=9,
    num_key_value_heads=3,
    intermediate_size=1536,
    vocab_size=49152,
    head_dim=64,
    tie_word_embeddings=True,
)


def test_the_report_uses_the_planners_flops_per_token():
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    block = mfu_report(
        SMOLLM2,
        sequence_length=256,
        lora_rank=16,
        lora_target_modules=targets,
        tokens_per_second=1000.0,
        peak_flops=1e11,
        peak_source="test",
    )
    shape = DecoderShape(30, 576, 9, 3, 1536, 49152, head_dim=64, tie_word_embeddings=True)
    expected = flops_per_token(shape, 256, 16, targets, gradient_checkpointing=False).model_flops
    assert block["model_flops_per_token"] == expected
    assert block["mfu"] == round(1000.0 * expected / 1e11, 4)
    assert (
        mfu_report(
            SMOLLM2,
            sequence_length=256,
            lora_rank=16,
            lora_target_modules=targets,
            tokens_per_second=None,
            peak_flops=1e11,
            peak_source="test",
        )["mfu"]
        is None
    )


def test_a_hugging_face_config_maps_to_the_planners_shape():
    from transformers import Qwen3Config

    shape = decoder_shape(
        Qwen3Config(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=100,
            head_dim=32,
            tie_word_embeddings=True,
        )
    )
    assert shape == DecoderShape(2, 64, 4, 2, 128, 100, head_dim=32, tie_word_embeddings=True, qk_norm=True)


def test_a_llama_config_with_head_dim_has_no_qk_norm():
    # Llama-3.2-1B's config.json sets head_dim (64) too; q_norm/k_norm are Qwen3's, keyed on the family.
    from transformers import LlamaConfig

    shape = decoder_shape(
        LlamaConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=100,
            head_dim=16,
        )
    )
    assert shape.head_dim == 16 and shape.qk_norm is False


def test_the_peak_is_measured_on_this_device():
    peak = measured_matmul_peak(torch.device("cpu"), torch.float32)
    assert 1e8 < peak < 1e14  # a CPU: between 0.1 GFLOP/s and 100 TFLOP/s
