"""Few-row matmuls on CPUs without fast bf16: a model's linear layers prepacked for fbgemm's fp16 GEMM.

Why: decoding runs every linear layer on one row per running request (8 to 16 rows), a shape the
default fp32 path handles badly on some CPUs. On our 2-core AMD EPYC (AVX2; torch 2.13 with MKL
2024.2) fp32 ``F.linear`` over SmolLM2-135M's 576x1536 projection took about 3x as long at 8 rows as
at 1, and its 576x49152 LM head moved 3 GB/s of weights against 12 GB/s of copy bandwidth. fbgemm's
GEMM with fp16 weights packed once took 2.0x to 2.5x less time at 8 rows, 4.4x on the LM head
(``bench/packed_linear.py`` measures it on the machine at hand; ``bench/serve_load.py`` the server). The
kernel converts the packed weights to fp32 and multiplies, accumulates and returns fp32 (pytorch
``aten/src/ATen/native/quantized/cpu/qlinear_dynamic.cpp``, ``PackedLinearWeightFp16::apply_dynamic_impl``;
packing in ``qlinear_prepack.cpp``, ``PackedLinearWeightFp16::prepack``).

What it does to the weights: packing is used only for a checkpoint stored in bf16 or fp16 that was
loaded in fp32 because this CPU multiplies bf16 slowly (``inference/generation.py``), and each layer is
checked before it is packed. fp16 holds every fp16 value, and every bf16 value whose magnitude lies in
fp16's normal range [2**-14, 65504] (10 mantissa bits to bf16's 7). A smaller bf16 value becomes an fp16
subnormal, a multiple of 2**-24, off by at most 2**-25 (3e-8); a layer that any weight would move by
more than that (a checkpoint whose config.json names a dtype its weights do not have), or that holds a
weight beyond 65504 (which the prepack would saturate, writing the clamped value back into the tensor it
is given), is left unpacked. The prepack is given a copy, so the fp32 weights stay as loaded. What
remains is the order of summation, as between any two GEMM kernels: the greedy tokens are tested equal
to the unpacked model's (tests/test_packed_linear.py).

Calls of more than ``max_rows`` rows (a long prefill, a loss pass over many targets) take the unchanged
fp32 path: from about 512 rows the default kernel is as fast, and those calls give bitwise the unpacked
result. Fewer rows take the packed kernel wherever they come from, including ``evaluate``'s LM head over
a batch's answer tokens. The fp32 weights stay resident beside the fp16 copy: 1.5x the fp32 weights.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# At or below this many rows (tokens in the call) the packed kernel runs. On the machine above
# (`bench/packed_linear.py`, 2 threads, idle): packed 2.0-2.5x faster at 8 rows on the layers' shapes
# and 4.4x on the LM head, 1.1-1.7x at 64, even to 1.45x at 256, even at 512 (0.95-1.09x).
MAX_PACKED_ROWS = 256


def packing_unavailable(saved_dtype: Any, loaded_dtype: Any, device: Any) -> str | None:
    """Why the layers of a model stored in ``saved_dtype`` and loaded in ``loaded_dtype`` on
    ``device`` are not packed, or None when they are."""
    if device.type != "cpu":
        return f"the model runs on {device.type}"
    if loaded_dtype != torch.float32:
        return f"the model runs in {loaded_dtype}, not fp32"
    if saved_dtype not in (torch.bfloat16, torch.float16):
        return f"its checkpoint is stored in {saved_dtype}: fp16 would round its weights"
    if "fbgemm" not in _quantized_engines():
        return "this torch build has no fbgemm (x86 only)"
    if _cpu_capability() not in ("AVX2", "AVX512"):
        return f"fbgemm needs AVX2 and this CPU offers {_cpu_capability()}"
    return None


def _quantized_engines() -> list[str]:
    return list(torch.backends.quantized.supported_engines)


def _cpu_capability() -> str:
    return str(torch.backends.cpu.get_cpu_capability())


# Largest fp16 value; the prepack saturates beyond it.
FP16_MAX = 65504.0
# The most an fp16 subnormal moves a smaller bf16 value (half its spacing of 2**-24).
SUBNORMAL_ROUNDING = 2.0**-25


def fp16_keeps(weight: torch.Tensor) -> bool:
    """Whether fp16 holds ``weight`` to within an fp16 subnormal's rounding, with nothing saturated."""
    w = weight.detach()
    if not bool(w.abs().max() <= FP16_MAX):
        return False
    return bool((w.half().float() - w).abs().max() <= SUBNORMAL_ROUNDING)


def _fp16_gemm(x: torch.Tensor, packed: Any) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic_fp16(x, packed)


class PackedLinear(torch.nn.Module):
    """Stands in for an ``nn.Linear`` (same weight and bias Parameters) and also holds the weight
    prepacked in fp16, used for fp32 calls of few rows on the CPU."""

    def __init__(self, linear: torch.nn.Linear, max_rows: int = MAX_PACKED_ROWS) -> None:
        super().__init__()
        # The same Parameter objects: tied weights (an LM head shared with the embeddings) stay tied.
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.max_rows = max_rows
        bias = None if linear.bias is None else linear.bias.detach().clone()
        # A copy: the prepack writes saturated values back into the tensor it is given.
        self.packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().clone(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dtype == torch.float32
            and x.device.type == "cpu"
            and x.dim() >= 2
            and x.numel() <= self.max_rows * self.in_features
        ):
            return _fp16_gemm(x, self.packed)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, max_rows={self.max_rows}"


def pack_linear_layers(model: torch.nn.Module, max_rows: int = MAX_PACKED_ROWS) -> tuple[int, list[str]]:
    """Replace each ``nn.Linear`` of ``model`` (inference only) whose weights fp16 keeps by a
    ``PackedLinear``: (how many were packed, the names of those left as they were)."""
    packed, kept = 0, []
    for parent_name, parent in model.named_modules():
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            if fp16_keeps(child.weight) and (child.bias is None or fp16_keeps(child.bias)):
                setattr(parent, name, PackedLinear(child, max_rows))
                packed += 1
            else:
                kept.append(f"{parent_name}.{name}" if parent_name else name)
    return packed, kept
