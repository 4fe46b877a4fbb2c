"""fp32 `F.linear` against fbgemm's prepacked fp16-weight GEMM (inference/packed_linear.py), side by side
in one process, at the row counts decoding and prefill produce. Not a timed test.

    .venv/bin/python bench/packed_linear.py [--threads 2] [--rows 1,8,16,64,256,512]

The shapes are SmolLM2-135M's (the local default): attention 576x576, MLP 576x1536 and 1536x576,
LM head 576x49152. Weights are bf16 values held in fp32, as a served checkpoint is on a CPU without fast
bf16. Each cell is the median of interleaved repeats; ``MAX_PACKED_ROWS`` should sit where the packed
column stops winning.
"""

from __future__ import annotations

import argparse
import statistics
import time

SHAPES = {"attn 576x576": (576, 576), "mlp 576x1536": (576, 1536), "mlp 1536x576": (1536, 576)}
LM_HEAD = {"lm_head 576x49152": (576, 49152)}


def main() -> None:
    import torch
    import torch.nn.functional as F

    from inference.packed_linear import MAX_PACKED_ROWS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default="1,8,16,64,256,512")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [int(r) for r in args.rows.split(",")]
    print(
        f"threads={args.threads} cpu={torch.backends.cpu.get_cpu_capability()} MAX_PACKED_ROWS={MAX_PACKED_ROWS}"
    )
    print(f"{'shape':<20}{'rows':>6}{'fp32 us':>10}{'packed us':>11}{'speedup':>9}")
    torch.manual_seed(0)
    for label, (k, n) in {**SHAPES, **LM_HEAD}.items():
        weight = torch.randn(n, k).bfloat16().float()
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        for m in rows:
            x = torch.randn(m, k)
            plain, fast = [], []
            repeats = max(3, args.repeats // (4 if label in LM_HEAD else 1))
            for _ in range(repeats + 1):  # the first of each is a warm-up, dropped
                t = time.perf_counter()
                F.linear(x, weight)
                plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                torch.ops.quantized.linear_dynamic_fp16(x, packed)
                fast.append(time.perf_counter() - t)
            a, b = statistics.median(plain[1:]), statistics.median(fast[1:])
            print(f"{label:<20}{m:>6}{a * 1e6:>10.0f}{b * 1e6:>11.0f}{a / b:>8.2f}x")


if __name__ == "__main__":
    main()
