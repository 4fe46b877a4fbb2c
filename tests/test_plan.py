"""The Neuron memory and shape planner (config/plan.py), `mlops plan`, and the FLOPs it states."""

from __future__ import annotations

import pytest

from training.flops import DecoderShape, flops_per_token, lora_parameters, matmul_parameters, parameter_count

ALL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Llama-3.1-8B's config.json (meta-llama/Llama-3.1-8B): 32 layers, hidden 4096, 32 heads, 8 KV heads,
# intermediate 14336, vocab 128256, untied head; Meta's model card calls it 8.03B parameters.
LLAMA_8B = DecoderShape(32, 4096, 32, 8, 14336, 128256)
# Qwen3-8B's config.json (Qwen/Qwen3-8B): 36 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128,
# intermediate 12288, vocab 151936, untied; the model card says 8.2B parameters.
QWEN3_8B = DecoderShape(36, 4096, 32, 8, 12288, 151936, head_dim=128)
# SmolLM2-135M's config.json: 30 layers, hidden 576, 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied.
SMOLLM2 = DecoderShape(30, 576, 9, 3, 1536, 49152, tie_word_embeddings=True)


@pytest.mark.parametrize(("shape", "published"), [(LLAMA_8B, 8.03e9), (QWEN3_8B, 8.2e9), (SMOLLM2, 134.5e6)])
def test_parameter_count_matches_the_model_cards(shape: DecoderShape, published: float) -> None:
    assert parameter_count(shape) == pytest.approx(published, rel=0.01)


def test_lora_parameters_of_llama_8b_rank_16_on_every_linear() -> None:
    # The figure peft prints for Llama-3-8B with r=16 on all seven projections: 41,943,040.
    assert lora_parameters(LLAMA_8B, 16, ALL_LINEARS) == 41_943_040


def test_flops_follow_palm_appendix_b() -> None:
    n, t = matmul_parameters(LLAMA_8B), 2048
    attention = 4 * 32 * 32 * 128 * t
    f = flops_per_token(LLAMA_8B, t, 16, ALL_LINEARS, gradient_checkpointing=False)
    n_lora = lora_parameters(LLAMA_8B, 16, ALL_LINEARS)
    assert f.full_training == 6 * n + 3 * attention
    assert f.lora_training == 4 * n + 6 * n_lora + 3 * attention
    assert f.model_flops == f.lora_training == f.hardware_per_token
    recomputed = flops_per_token(LLAMA_8B, t, 16, ALL_LINEARS, gradient_checkpointing=True)
    assert recomputed.hardware_per_token == f.lora_training + f.forward
    assert recomputed.model_flops == f.model_flops
