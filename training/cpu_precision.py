"""Whether this CPU multiplies bf16 faster than fp32: the torch backend and the inference code ask it
before they choose bf16 on a CPU."""

from __future__ import annotations

import time
from functools import cache


@cache
def cpu_bf16_is_fast(size: int = 256, rounds: int = 3) -> bool:
    """Whether bf16 matmuls beat fp32 on this CPU, timed here (best of ``rounds``, a few milliseconds).

    bf16 autocast pays only where the CPU multiplies bf16 natively (AVX512-BF16, AMX, Arm BF16).
    Elsewhere PyTorch takes a generic path far slower than fp32: on an AVX2-only AMD EPYC,
    ``1024x1024`` matmuls ran at 0.8 GFLOP/s in bf16 against 52 in fp32, so a bf16 fine-tune was tens
    of times slower. A timing answers for any CPU, where a list of CPU flags would go stale."""
    import torch

    a = torch.randn(size, size)

    def best(dtype: torch.dtype) -> float:
        x = a.to(dtype)
        x @ x  # warm-up: the first call pays for kernel selection
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - start)
        return min(times)

    return best(torch.bfloat16) < best(torch.float32)
