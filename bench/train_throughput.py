"""Real tokens/s and MFU of our `train` entrypoint against TRL's SFTTrainer, same model, data, steps and
threads.

    .venv/bin/python bench/train_throughput.py              # what `make bench` runs
    .venv/bin/python bench/train_throughput.py --steps 10 --threads 4 --json-out /tmp/bench.json
    .venv/bin/python bench/train_throughput.py --variants ours,ours-nodropout,ours+compile --rounds 3

Variants, each in its own fresh process so threads, allocator state and imports do not leak:
  ours          python -m containers.entrypoint train (torch backend), packed blocks of --max-seq-length
  trl-defaults  SFTTrainer + the same LoRA config, SFTConfig defaults otherwise (no packing, batch 8,
                gradient checkpointing on, bf16 autocast, fp32 base weights, loss on every token)
  trl-packing   the same with packing=True (best-fit decreasing + padding-free), max_length and batch
                size equal to ours, so each step offers the same number of token slots
  opt-in, each separating one choice from the rest of the difference:
  trl-packing-no-gc  trl-packing without gradient checkpointing (our torch backend does not use it)
  trl-packing-fp32   trl-packing with bf16=False: on a CPU without fast bf16 (AVX2 only), SFTConfig's
                default bf16 autocast is what makes TRL slow, not anything it computes
  ours-nodropout     ours with lora_dropout=0 (peft then puts nn.Identity on the LoRA path)
  ours+bs2x          ours with twice the blocks per step (larger matmuls, same block length)
  ours+compile       ours with torch_compile=true (torch.compile of the decoder, see torch_backend)
  ours+pin           ours with OpenMP threads pinned to cores (OMP_PROC_BIND=close, OMP_PLACES=cores)

"Real tokens" are the non-padding tokens fed to the model. Timing covers the training loop only
(TRL: on_train_begin..on_train_end; ours: the summed optimizer steps), not model loading or
tokenization, which both sides do once before training. `steady` leaves out the first step, which
pays for warm-up and, with torch.compile, for compiling; the plain figure includes it. Also printed:
the number of distinct input shapes each variant fed the model (every new shape is a recompile on
Trainium), and MFU: real tokens/s x the planner's LoRA training FLOPs per token (training/flops.py, the
same figure for every variant) / the matmul peak measured in that variant's process, in the dtype it
computes in (training/mfu.py; our training report states the very same block). On a CPU without fast
bf16 that dtype is fp32 for ours (precision=auto) and bf16 for TRL's defaults: each MFU is against the
peak of what that variant actually multiplies in.

`--rounds N` runs the variant list N times, interleaved, and takes each variant's median: the ratio of
two variants measured minutes apart on a shared machine is otherwise mostly noise.

Targets (issue 17): ours >= 3x trl-defaults and >= 3x trl-packing, MFU >= 20%, with exactly one input
shape. The script exits 1 when a target is missed, so it can gate a release; it is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Ours, with what each variant changes: hyperparameters (strings, as SageMaker passes them) and env.
# "{batch2x}" is filled from --batch-size.
OURS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "ours": ({}, {}),
    "ours-nodropout": ({"lora_dropout": "0"}, {}),
    "ours+bs2x": ({"per_device_train_batch_size": "{batch2x}"}, {}),
    "ours+compile": ({"torch_compile": "true"}, {}),
    "ours+pin": ({}, {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}),
}
TRL = ("trl-defaults", "trl-packing", "trl-packing-no-gc", "trl-packing-fp32")
VARIANTS = (*OURS, *TRL)
DEFAULT_VARIANTS = ("ours", "trl-defaults", "trl-packing")
TARGETS = {"trl-defaults": 3.0, "trl-packing": 3.0}
MFU_TARGET = 0.20


def _thread_env(threads: int) -> dict[str, str]:
    return dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false"
    )


def _default_model() -> Path:
    from config import load_config
    from pipelines.local.base_model import local_base_model

    config = load_config([], [])
    return local_base_model(config, Path(config.local.store_dir))


def _lora_kwargs() -> dict:
    """LoRA settings shared by every variant: the project defaults."""
    from training.hyperparameters import TrainHyperparameters

    hp = TrainHyperparameters()
    return dict(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_target_modules,
    )


# ---- ours ------------------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace, work: Path, variant: str) -> dict:
    opt = work / "opt"
    (opt / "input" / "config").mkdir(parents=True)
    (opt / "input" / "data" / "train").mkdir(parents=True)
    (opt / "input" / "data" / "train" / "train.jsonl").symlink_to(args.data.resolve())
    hp = {
        "base_model": str(args.model),
        "max_steps": str(args.steps),
        "per_device_train_batch_size": str(args.batch_size),
        "max_seq_length": str(args.max_seq_length),
        "num_threads": str(args.threads),
        "learning_rate": str(args.learning_rate),
        "save_steps": str(args.steps + 1),  # no checkpoint inside the measured loop
        "logging_steps": str(args.steps),
        "seed": "0",
        "warmup_steps": "0",  # TRL's default; the schedule does not change the cost of a step
        "backend": "torch",
    }
    hp_changes, env_changes = OURS[variant]
    hp.update({k: v.format(batch2x=2 * args.batch_size) for k, v in hp_changes.items()})
    (opt / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    env = {**_thread_env(args.threads), **env_changes}
    env["MLOPS_OPT_ML"] = str(opt)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "containers.entrypoint", "train"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"{variant} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    report = json.loads((opt / "model" / "training_report.json").read_text())
    first = report["first_step"]
    return {
        "variant": variant,
        "steps": report["steps_completed"],
        "real_tokens": report["real_tokens_trained"],
        "seconds": report["train_seconds"],
        "tokens_per_second": report["real_tokens_trained"] / report["train_seconds"],
        "steady_tokens_per_second": _steady(
            report["real_tokens_trained"], report["train_seconds"], first["real_tokens"], first["seconds"]
        ),
        "first_step_seconds": first["seconds"],
        "input_shapes": report["input_shapes"],
        # The training report's own MFU block: the bench and the report state one figure.
        "mfu": report["mfu"],
        "settings": {
            "precision": report["precision"],
            **{k: report["hyperparameters"][k] for k in ("per_device_train_batch_size", "lora_dropout")},
            **({"compile": report["compile"]} if "compile" in report else {}),
            **env_changes,
        },
    }


def _steady(real: int, seconds: float, first_real: int, first_seconds: float) -> float | None:
    """Tokens/s after the first step (warm-up, and compiling where torch.compile is on)."""
    return (real - first_real) / (seconds - first_seconds) if seconds > first_seconds else None


# ---- TRL (runs inside a child process of this script) ---------------------------------------------


def _trl_dataset(path: Path):
    """The same examples as messages: prompt/completion lines become one user and one assistant turn,
    exactly how our tokenizer renders them (training/tokenize.py)."""
    from datasets import Dataset

    from training.data import load_examples

    rows = []
    for ex in load_examples(path).examples:
        messages = ex["messages"] or [
            {"role": "user", "content": ex["prompt"]},
            {"role": "assistant", "content": ex["completion"]},
        ]
        rows.append({"messages": messages})
    return Dataset.from_list(rows)


def run_trl(args: argparse.Namespace, work: Path, variant: str) -> dict:
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from training.base_model import load_tokenizer
    from training.mfu import PROBE_SIZE, measured_matmul_peak, mfu_report

    torch.set_num_threads(args.threads)
    options = dict(
        output_dir=str(work / "trl"),
        max_steps=args.steps,
        learning_rate=args.learning_rate,
        report_to="none",
        save_strategy="no",
        logging_steps=args.steps,
        seed=0,
        disable_tqdm=True,
        # Required on a CPU-only machine: SFTConfig's default bf16=True is refused otherwise
        # ("Your setup doesn't support bf16/gpu"). It changes nothing else.
        use_cpu=not torch.cuda.is_available(),
    )
    if variant.startswith("trl-packing"):
        options.update(
            packing=True, max_length=args.max_seq_length, per_device_train_batch_size=args.batch_size
        )
    if variant == "trl-packing-no-gc":
        options.update(gradient_checkpointing=False)
    if variant == "trl-packing-fp32":
        # SFTConfig turns bf16 on unless told otherwise (trl v0.24.0 trl/trainer/sft_config.py:261,
        # `self.bf16 = not (self.fp16) if self.bf16 is None else self.bf16`).
        options.update(bf16=False)
    config = SFTConfig(**options)
    tokenizer = load_tokenizer(str(args.model), None)
    trainer = SFTTrainer(
        model=str(args.model),
        args=config,
        train_dataset=_trl_dataset(args.data),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM", **_lora_kwargs()),
    )

    seen: dict = {"real_tokens": 0, "forwards": 0, "shapes": set()}

    def count(_module, _args, kwargs):
        # Called once per micro-batch forward (gradient checkpointing re-runs layers, not this).
        ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        seen["real_tokens"] += int(mask.sum()) if mask is not None else ids.numel()
        seen["forwards"] += 1
        seen["shapes"].add(tuple(ids.shape))

    trainer.model.register_forward_pre_hook(count, with_kwargs=True)

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            clock["start"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            if "first_step_end" not in clock:
                clock["first_step_end"] = time.perf_counter()
                clock["first_step_tokens"] = seen["real_tokens"]

        def on_train_end(self, *a, **k):
            clock["end"] = time.perf_counter()

    trainer.add_callback(Clock())
    trainer.train()
    seconds = clock["end"] - clock["start"]
    tokens_per_second = seen["real_tokens"] / seconds
    # The dtype TRL's matmuls run in: bf16 under its (default) autocast, else fp32.
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    device = trainer.model.device
    mfu = mfu_report(
        trainer.model.get_base_model().config,
        sequence_length=args.max_seq_length,
        lora_rank=_lora_kwargs()["r"],
        lora_target_modules=list(_lora_kwargs()["target_modules"]),
        tokens_per_second=tokens_per_second,
        peak_flops=measured_matmul_peak(device, dtype),
        peak_source=f"{PROBE_SIZE}x{PROBE_SIZE} {str(dtype).removeprefix('torch.')} matmul timed on "
        f"{device.type}, this run",
    )
    first_seconds = clock["first_step_end"] - clock["start"]
    return {
        "variant": variant,
        "steps": trainer.state.global_step,
        "real_tokens": seen["real_tokens"],
        "seconds": seconds,
        "tokens_per_second": tokens_per_second,
        "steady_tokens_per_second": _steady(
            seen["real_tokens"], seconds, clock["first_step_tokens"], first_seconds
        ),
        "first_step_seconds": first_seconds,
        "input_shapes": sorted(list(s) for s in seen["shapes"]),
        "mfu": mfu,
        "settings": {
            **{
                k: getattr(config, k)
                for k in (
                    "per_device_train_batch_size",
                    "max_length",
                    "packing",
                    "gradient_checkpointing",
                    "bf16",
                )
            },
            # The trainer, not the config, decides this: packing with the bfd strategy forces it on.
            "padding_free": trainer.padding_free,
        },
    }


# ---- driver ----------------------------------------------------------------------------------------


def _run_variant(args: argparse.Namespace, variant: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as tmp:
        if variant in OURS:
            return run_ours(args, Path(tmp), variant)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--child-out",
            str(Path(tmp) / "result.json"),
            *args.passthrough,
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=_thread_env(args.threads), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(
                f"{variant} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
            )
        return json.loads((Path(tmp) / "result.json").read_text())


def _median_run(runs: list[dict]) -> dict:
    """The run with the median tokens/s (the lower middle of an even count), all its runs' figures kept."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_second"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["all_tokens_per_second"] = [round(r["tokens_per_second"], 1) for r in runs]
    steady = [r["steady_tokens_per_second"] for r in runs if r["steady_tokens_per_second"]]
    chosen["steady_tokens_per_second"] = statistics.median(steady) if steady else None
    return chosen


def _line(r: dict) -> str:
    mfu = r["mfu"]
    steady = r["steady_tokens_per_second"]
    return (
        f"  {r['variant']:18s} real_tokens={r['real_tokens']:7d} seconds={r['seconds']:8.2f} "
        f"tokens_per_second={r['tokens_per_second']:8.1f} "
        f"steady_tokens_per_second={steady if steady is None else round(steady, 1)} "
        f"first_step_seconds={r['first_step_seconds']:.2f} "
        f"mfu={mfu['mfu']:.3f} peak_gflops={mfu['peak_flops'] / 1e9:.1f} ({mfu['peak_source']}) "
        f"distinct_input_shapes={len(r['input_shapes'])} settings={r['settings']}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per variant")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for every variant")
    p.add_argument(
        "--batch-size", type=int, default=4, help="our packed blocks per step (and TRL packing's batch)"
    )
    p.add_argument(
        "--max-seq-length", type=int, default=256, help="block length (ours) and max_length (TRL packing)"
    )
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="HF model folder (default: the project's local default model)",
    )
    p.add_argument("--data", type=Path, default=ROOT / "training/tasks/date_normalization/train.jsonl")
    p.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma list of {', '.join(VARIANTS)}"
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="run the variant list this many times, interleaved; medians"
    )
    p.add_argument("--json-out", type=Path, default=None, help="also write all results here")
    p.add_argument("--child", choices=TRL, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        result = run_trl(args, args.child_out.parent, args.child)
        args.child_out.write_text(json.dumps(result))
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if args.rounds < 1:
        p.error(f"--rounds: {args.rounds}; give 1 or more")
    args.model = (args.model or _default_model()).resolve()
    args.passthrough = [
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--max-seq-length",
        str(args.max_seq_length),
        "--learning-rate",
        str(args.learning_rate),
        "--model",
        str(args.model),
        "--data",
        str(args.data),
    ]

    print(
        f"model={args.model} data={args.data} steps={args.steps} threads={args.threads} "
        f"batch_size={args.batch_size} max_seq_length={args.max_seq_length} rounds={args.rounds}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            print(f"running {variant} (round {round_ + 1} of {args.rounds}) ...", flush=True)
            runs[variant].append(r := _run_variant(args, variant))
            print(_line(r), flush=True)
    results = {v: _median_run(rs) for v, rs in runs.items()}
    if args.rounds > 1:
        print("medians over rounds:")
        for r in results.values():
            print(_line(r) + f" all_tokens_per_second={r['all_tokens_per_second']}")

    failed = []
    if "ours" in results:
        ours = results["ours"]
        if len(ours["input_shapes"]) != 1:
            failed.append(f"ours fed {len(ours['input_shapes'])} input shapes, target exactly 1")
        if ours["mfu"]["mfu"] < MFU_TARGET:
            failed.append(f"ours MFU {ours['mfu']['mfu']:.3f} < {MFU_TARGET}")
        for variant, result in results.items():
            if variant == "ours":
                continue
            ratio = ours["tokens_per_second"] / result["tokens_per_second"]
            result["ours_ratio"] = ratio
            target = TARGETS.get(variant)
            print(
                f"ratio ours/{variant} = {ratio:.2f}x"
                + (f" (target >= {target}x)" if target else " (no target)")
            )
            if target and ratio < target:
                failed.append(f"ours/{variant} = {ratio:.2f}x < {target}x")
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "runs": runs},
                indent=2,
            )
        )
    for problem in failed:
        print(f"TARGET MISSED: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
