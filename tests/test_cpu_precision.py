"""Where bf16 is used: the torch backend and the inference loader time bf16 against fp32 on a CPU (the training itself runs in tests/e2e)."""

import pytest
import torch

from training.backends import torch_backend


def test_auto_precision_on_cpu_follows_the_timing_and_explicit_choices_are_kept(monkeypatch):
    """On an AVX2-only CPU bf16 matmuls are tens of times slower than fp32: `auto` must not pick bf16
    there. It times both; an explicit `bf16` or `fp32` is taken as asked, without timing."""
    monkeypatch.setattr(torch_backend.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch_backend, "cpu_bf16_is_fast", lambda: False)
    assert torch_backend._pick_device_and_dtype("auto") == (torch.device("cpu"), None)
    monkeypatch.setattr(torch_backend, "cpu_bf16_is_fast", lambda: True)
    assert torch_backend._pick_device_and_dtype("auto") == (torch.device("cpu"), torch.bfloat16)

    def not_timed():
        pytest.fail("an explicit precision was timed")

    monkeypatch.setattr(torch_backend, "cpu_bf16_is_fast", not_timed)
    assert torch_backend._pick_device_and_dtype("bf16")[1] == torch.bfloat16
    assert torch_backend._pick_device_and_dtype("fp32")[1] is None


def test_inference_loads_a_bf16_model_in_fp32_where_the_cpu_is_slow_at_bf16(tiny_bf16_model, monkeypatch):
    """Our merged models are saved in bf16; evaluate, compile's smoke test and serve load them with
    dtype=auto, which keeps bf16 only where the CPU multiplies it fast."""
    from inference import generation

    saved = tiny_bf16_model
    monkeypatch.setattr(generation, "pick_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(generation, "cpu_bf16_is_fast", lambda: False)
    assert generation.load_for_inference(saved)[0].dtype == torch.float32
    monkeypatch.setattr(generation, "cpu_bf16_is_fast", lambda: True)
    assert generation.load_for_inference(saved)[0].dtype == torch.bfloat16
    assert generation.load_for_inference(saved, dtype="float32")[0].dtype == torch.float32
