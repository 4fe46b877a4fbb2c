"""Prepacked fp16-weight linear layers for few-row decoding on CPUs without fast bf16
(inference/packed_linear.py, issue 17): used only where no weight changes, and the same greedy tokens."""

from __future__ import annotations

import pytest
import torch

from inference import generation, packed_linear
from inference.batching import RowBatch, Sampling
from inference.packed_linear import PackedLinear, pack_linear_layers, packing_unavailable

CPU = torch.device("cpu")
needs_fbgemm = pytest.mark.skipif(
    packing_unavailable(torch.bfloat16, torch.float32, CPU) is not None,
    reason=f"fbgemm's fp16 GEMM is not available here: {packing_unavailable(torch.bfloat16, torch.float32, CPU)}",
)


@pytest.fixture(scope="module")
def bf16_valued_llama():
    """A tiny Llama whose weights are bf16 values held in fp32: a bf16 checkpoint loaded on such a CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        attention_bias=True,  # so the packed bias is exercised too
        mlp_bias=True,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
    return model


def test_packing_is_refused_wherever_it_could_change_a_weight_or_has_no_kernel(monkeypatch):
    assert packing_unavailable(torch.float32, torch.float32, CPU) == (
        "its checkpoint is stored in torch.float32: fp16 would round its weights"
    )
    assert "bfloat16, not fp32" in str(packing_unavailable(torch.bfloat16, torch.bfloat16, CPU))
    assert (
        packing_unavailable(torch.bfloat16, torch.float32, torch.device("cuda")) == "the model runs on cuda"
    )
    monkeypatch.setattr(packed_linear, "_quantized_engines", lambda: ["qnnpack"])  # an Arm build
    assert (
        packing_unavailable(torch.float16, torch.float32, CPU) == "this torch build has no fbgemm (x86 only)"
    )
    monkeypatch.setattr(packed_linear, "_quantized_engines", lambda: ["fbgemm"])
    monkeypatch.setattr(packed_linear, "_cpu_capability", lambda: "DEFAULT")
    assert "needs AVX2" in str(packing_unavailable(torch.float16, torch.float32, CPU))


@needs_fbgemm
def test_few_rows_take_the_packed_kernel_and_many_rows_the_unchanged_fp32_path(monkeypatch):
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.copy_(linear.weight.bfloat16().float())
        linear.bias.copy_(linear.bias.bfloat16().float())
    packed = PackedLinear(linear, max_rows=4)
    assert packed.weight is linear.weight and packed.bias is linear.bias
    calls = []
    real = packed_linear._fp16_gemm
    monkeypatch.setattr(packed_linear, "_fp16_gemm", lambda x, p: calls.append(x.shape) or real(x, p))
    few, many, one_d = torch.randn(1, 3, 64), torch.randn(2, 5, 64), torch.randn(64)
    with torch.inference_mode():
        assert torch.equal(packed(many), linear(many))  # 10 rows: bitwise, the same kernel
        assert torch.equal(packed(one_d), linear(one_d))  # the packed kernel takes 2-D and up only
        assert calls == []
        got, want = packed(few), linear(few)  # 3 rows: packed
    assert calls == [torch.Size([1, 3, 64])]
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # summation order only


@needs_fbgemm
def test_a_layer_that_fp16_would_change_is_left_unpacked_and_no_weight_is_touched():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    with torch.no_grad():
        for layer in model:
            layer.weight.copy_(layer.weight.bfloat16().float())
            layer.bias.copy_(layer.bias.bfloat16().float())
        model[1].weight[0, 0] = 1e5  # beyond fp16: the prepack would saturate it
        model[2].weight[0, 0] = 0.1  # not a bf16 value: fp16 rounds it
    before = [layer.weight.clone() for layer in model]
    assert pack_linear_layers(model) == (1, ["1", "2"])
    assert isinstance(model[0], PackedLinear) and type(model[1]) is torch.nn.Linear
    # Packing itself copies: a saturating prepack leaves the fp32 weight as it was.
    PackedLinear(model[1])
    for layer, weight in zip(model, before, strict=True):
        assert torch.equal(layer.weight, weight)


@needs_fbgemm
def test_a_packed_model_keeps_tied_weights_and_gives_the_same_greedy_tokens(bf16_valued_llama):
    import copy

    reference = bf16_valued_llama
    packed = copy.deepcopy(reference)
    assert pack_linear_layers(packed) == (2 * 7 + 1, [])  # q, k, v, o, gate, up, down per layer; LM head
    assert packed.lm_head.weight is packed.model.embed_tokens.weight
    prompts = [[3, 4, 5, 6, 7], [9, 10], list(range(11, 40)), [40] * 7]

    def tokens(model) -> list[list[int]]:  # noqa: ANN001
        batch = RowBatch(model, pad_id=0)
        out = [[t] for t in batch.advance(admit=[(p, Sampling()) for p in prompts])]
        for _ in range(15):
            for row, t in enumerate(batch.advance()):
                out[row].append(t)
        return out

    assert tokens(packed) == tokens(reference)
    # And transformers' own generate runs on the packed model.
    ids = torch.tensor([prompts[0]])
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None, top_k=None)
    assert torch.equal(packed.generate(input_ids=ids, **kwargs), reference.generate(input_ids=ids, **kwargs))


@needs_fbgemm
def test_the_inference_loader_packs_a_bf16_checkpoint_upcast_on_a_slow_bf16_cpu_and_nothing_else(
    tiny_bf16_model, tiny_model, monkeypatch
):
    saved = tiny_bf16_model
    monkeypatch.setattr(generation, "pick_device", lambda: CPU)
    monkeypatch.setattr(generation, "cpu_bf16_is_fast", lambda: False)

    def packed_layers(model) -> int:  # noqa: ANN001
        return sum(isinstance(m, PackedLinear) for m in model.modules())

    assert packed_layers(generation.load_for_inference(saved)[0]) == 2 * 7 + 1
    # A fp32 checkpoint would be rounded by fp16: left alone. So is an explicit dtype.
    assert packed_layers(generation.load_for_inference(tiny_model)[0]) == 0
    assert packed_layers(generation.load_for_inference(saved, dtype="float32")[0]) == 0
    monkeypatch.setattr(generation, "cpu_bf16_is_fast", lambda: True)  # runs in bf16: nothing to pack
    assert packed_layers(generation.load_for_inference(saved)[0]) == 0
