"""Model FLOPs utilization of a torch (CPU/CUDA) fine-tune, for its training report.

MFU = real (non-padding) tokens per second × model FLOPs per token ÷ the peak FLOP/s of the device.
The FLOPs per token are the planner's (``training/flops.py``, PaLM appendix B, LoRA convention), so the
report and ``mlops plan`` state the same figure. The peak is measured here, on the device that trained,
in the dtype it computed in, by timing square matmuls: a CPU's vendor peak is rarely what PyTorch
reaches (and bf16 on a CPU without native bf16 is tens of times slower than fp32, see
``cpu_precision.py``), so a measured peak is the honest denominator for a machine we do not know.
Where ``precision=auto`` keeps fp32 (a CPU without fast bf16), the peak is fp32's: MFU is always against
the peak of the dtype the run multiplies in. ``bench/train_throughput.py`` prints this same block for
our runs (read from the training report) and computes it the same way for TRL's.
"""

from __future__ import annotations

import time
from typing import Any

from training.flops import decoder_shape, flops_per_token, model_flops_utilization

PROBE_SIZE = 1024  # 2.1 GFLOP per matmul: ~40 ms at 50 GFLOP/s, enough to time, cheap next to training
PROBE_SECONDS = 0.5


def measured_matmul_peak(device: Any, dtype: Any) -> float:
    """FLOP/s of the fastest ``PROBE_SIZE`` square matmul on ``device`` in ``dtype`` (after one warm-up),
    timed for about ``PROBE_SECONDS`` and at least twice."""
    import torch

    a = torch.randn(PROBE_SIZE, PROBE_SIZE, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ a  # warm-up: kernel selection
    sync()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 2 or spent < PROBE_SECONDS:
        start = time.perf_counter()
        a @ a
        sync()
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return 2 * PROBE_SIZE**3 / best


def mfu_report(
    model_config: Any,
    *,
    sequence_length: int,
    lora_rank: int,
    lora_target_modules: list[str],
    tokens_per_second: float | None,
    peak_flops: float,
    peak_source: str,
) -> dict[str, Any]:
    """The report's ``mfu`` block: the figure, and everything it was computed from."""
    flops = flops_per_token(
        decoder_shape(model_config),
        sequence_length,
        lora_rank,
        lora_target_modules,
        gradient_checkpointing=False,
    )
    return {
        "mfu": round(model_flops_utilization(tokens_per_second, flops.model_flops, peak_flops), 4)
        if tokens_per_second
        else None,
        "model_flops_per_token": flops.model_flops,
        "convention": "LoRA training FLOPs per real token, PaLM appendix B (training/flops.py)",
        "tokens_per_second": tokens_per_second,
        "peak_flops": round(peak_flops),
        "peak_source": peak_source,
    }
