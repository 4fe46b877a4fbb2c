"""The torch backend's choice of precision (the training itself runs in tests/e2e)."""

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
