"""LoRA fine-tune with plain PyTorch on CPU or CUDA. Reads top to bottom: setup -> train -> save.

Speed on CPU comes from three choices: bf16 autocast where it pays (bf16 matmuls are several times
faster than fp32 on CPUs with AVX512-BF16/AMX, and far slower elsewhere: ``precision=auto`` times both
on the machine), packed blocks with no padding waste, and computing the LM head
only at positions that carry loss (the vocabulary projection is a large share of a small model).

``torch_compile=true`` compiles the decoder with inductor (one input shape: one graph). It is off by
default: on a 2-core AVX2 CPU it did not pay (bench/train_throughput.py, variant ``ours+compile``), and
where it cannot compile (no C++ compiler for inductor's CPU kernels, a backend error) the run logs why
and trains eagerly.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from training.backends import resolve_lora_targets
from training.base_model import load_tokenizer
from training.checkpoints import WriterLease, load_newest, save_checkpoint
from training.cpu_precision import cpu_bf16_is_fast
from training.errors import UserError
from training.export import save_merged
from training.job import BlockSampler, TrainJob
from training.loss import mean_token_loss, token_loss_sum
from training.metrics import MetricsSink, progress_wanted
from training.mfu import PROBE_SIZE, measured_matmul_peak, mfu_report
from training.packing import PackedBlocks, PreparedData
from training.prepare import prepare_for_training
from training.report import build_report, write_report
from training.tokenize import IGNORE_INDEX

log = logging.getLogger(__name__)

name = "torch"


def _mfu(job: TrainJob, parts: TrainSetup, state: TrainState) -> dict[str, Any]:
    """MFU against the planner's FLOPs per token and a matmul peak measured here (training/mfu.py)."""
    dtype = parts.amp or torch.float32
    peak = measured_matmul_peak(parts.device, dtype)
    return mfu_report(
        parts.model.get_base_model().config,
        sequence_length=job.hp.max_seq_length,
        lora_rank=job.hp.lora_r,
        lora_target_modules=list(job.hp.lora_target_modules),
        tokens_per_second=state.real_tokens / state.train_seconds if state.train_seconds else None,
        peak_flops=peak,
        peak_source=f"{PROBE_SIZE}x{PROBE_SIZE} {str(dtype).removeprefix('torch.')} matmul timed on "
        f"{parts.device.type}, this run",
    )


def _pick_device_and_dtype(precision: str) -> tuple[torch.device, torch.dtype | None]:
    if torch.cuda.is_available():
        device = torch.device("cuda")
        bf16_ok = torch.cuda.is_bf16_supported()
    else:
        device = torch.device("cpu")
        bf16_ok = precision == "auto" and cpu_bf16_is_fast()
    if precision == "bf16" or (precision == "auto" and bf16_ok):
        return device, torch.bfloat16
    return device, None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Plain ints, lists and tensors only, so the checkpoint loads with ``weights_only=True``: numpy's
    state is an array inside a tuple, which the safe unpickler refuses, so its key becomes a list."""
    # legacy=True always returns the tuple form; numpy types it as tuple-or-dict.
    legacy = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state(legacy=True))
    kind, key, pos, has_gauss, gauss = legacy
    numpy_state = {"kind": kind, "key": key.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], np.array(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])


def _load_model(job: TrainJob, dtype: torch.dtype | None) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            job.model_source,
            gguf_file=job.gguf_file,
            # Frozen base weights in bf16 when autocasting to bf16 anyway: no per-step casts and
            # half the memory. LoRA weights stay fp32 (peft upcasts adapters by default).
            dtype=dtype or torch.float32,
            attn_implementation="sdpa",
        )
    except OSError as exc:
        raise UserError(f"cannot load the base model from {job.model_source!r}: {exc}") from None
    model.config.use_cache = False
    return model


def apply_lora(model: Any, job: TrainJob) -> Any:
    from peft import LoraConfig, get_peft_model

    hp = job.hp
    resolved = resolve_lora_targets(model, hp.lora_target_modules)
    log.info("LoRA adapts %d linear layers (%s)", sum(map(len, resolved.values())), ", ".join(resolved))
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


Micro = tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]  # ids, labels, position ids, real tokens


class _Batches:
    """Tensors for micro-batch m, built from the packed blocks by the sampler."""

    def __init__(self, blocks: PackedBlocks, sampler: BlockSampler, device: torch.device) -> None:
        self.ids = torch.from_numpy(blocks.input_ids)
        self.labels = torch.from_numpy(blocks.labels)
        self.pos = torch.from_numpy(blocks.position_ids)
        self.real = torch.from_numpy(blocks.real_per_block)
        self.sampler = sampler
        self.device = device

    def get(self, m: int) -> Micro:
        idx = torch.tensor(self.sampler.indices(m))
        return (
            self.ids[idx].to(self.device),
            self.labels[idx].to(self.device),
            self.pos[idx].to(self.device),
            int(self.real[idx].sum()),
        )


def _save_trainer_state(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> None:
    model.save_pretrained(folder / "adapter")
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            **state,
        },
        folder / "trainer_state.pt",
    )


def _load_trainer_state(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter" / "adapter_model.safetensors"))
    # weights_only: tensors and plain containers, never arbitrary objects. A checkpoint prefix is writable
    # by whoever can write the bucket; a pickle loaded with weights_only=False runs its code as the job.
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    _set_rng_state(state.pop("rng"))
    return state


def _is_unreadable(exc: Exception) -> bool:
    """Whether a load error says the checkpoint's bytes are bad (random bytes, a cut-off file, a forged
    pickle that weights_only refuses), not that this run cannot use a sound checkpoint (another LoRA
    rank: ``_does_not_fit``) or that this machine failed to read it (I/O errors, out of memory). Only
    the first sets the checkpoint aside: the others would set every checkpoint aside and silently
    start over."""
    from safetensors import SafetensorError

    if isinstance(exc, torch.OutOfMemoryError):
        return False
    # A cut-off trainer_state.pt: torch's zip reader says so in a RuntimeError.
    if isinstance(exc, RuntimeError) and "PytorchStreamReader" in str(exc):
        return True
    # FileNotFoundError: a file the manifest did not list (the writer never wrote it), not a bad disk.
    return isinstance(exc, (pickle.UnpicklingError, EOFError, SafetensorError, FileNotFoundError))


def _does_not_fit(exc: Exception) -> bool:
    """A sound checkpoint this run cannot take: shapes or keys of another configuration (LoRA rank,
    target modules, optimizer groups) or of another version of the code."""
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    return isinstance(exc, (RuntimeError, ValueError, KeyError, TypeError, IndexError))


class CheckpointDoesNotFit(UserError):
    """A checkpoint that passes its manifest and reads, but was written by a differently set-up run."""


def _initial_state(model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Adapter weights, optimizer, schedule and RNG as setup left them: a failed load may have applied part
    of a checkpoint, and starting fresh must start from exactly this. (LoRA weights only: small.)"""
    from peft import get_peft_model_state_dict

    return {
        "adapter": {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "scheduler": copy.deepcopy(scheduler.state_dict()),
        "rng": _rng_state(),
    }


def _restore_initial_state(model: Any, optimizer: Any, scheduler: Any, initial: dict[str, Any]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, initial["adapter"])
    optimizer.load_state_dict(initial["optimizer"])
    scheduler.load_state_dict(initial["scheduler"])
    _set_rng_state(initial["rng"])


# ---- the recipe: setup -> train -> evaluate -> save --------------------------------------------------


class _CompiledForward:
    """What ``token_loss_sum`` needs of a causal LM (its decoder and its LM head), with the decoder run
    through ``torch.compile``. The compiled module shares the model's parameters; the model itself stays
    as it was, so saving and merging never see torch.compile's ``_orig_mod`` wrapper."""

    def __init__(self, base_model: Any) -> None:
        self.eager = base_model
        self.decoder = torch.compile(base_model.get_decoder())
        self.failed: str | None = None

    def get_decoder(self) -> Any:
        return self.eager.get_decoder() if self.failed else self.decoder

    def get_output_embeddings(self) -> Any:
        return self.eager.get_output_embeddings()


def _compile_blocker(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None. Inductor builds its CPU kernels with a C++ compiler
    (``CXX``, else ``g++``: torch v2.13.0 torch/_inductor/config.py ``cpp.cxx``), and its search raises
    ``InvalidCxxCompiler`` when none runs (torch/_inductor/cpp_builder.py ``cpp_compiler_search``)."""
    if device.type != "cpu":
        return None
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or whatever the search meets on a bare machine
        return f"no C++ compiler for inductor's CPU kernels ({type(exc).__name__}: {exc}); install g++ or set CXX"
    return None


@dataclass
class TrainSetup:
    """What setup builds once and every later stage uses."""

    device: torch.device
    amp: torch.dtype | None  # the autocast dtype; None: fp32
    tokenizer: Any
    train: PreparedData
    val: PreparedData | None
    model: Any  # the PEFT-wrapped model
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    compiled: _CompiledForward | None = None  # torch_compile=true, where it can compile
    compile_note: str = "off"  # what became of torch_compile, for the report

    @property
    def forward_model(self) -> Any:
        """What the training forward runs: the compiled decoder where one is in use, else the model."""
        if self.compiled is not None and not self.compiled.failed:
            return self.compiled
        return self.model.get_base_model()

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable)


@dataclass
class Window:
    """Sums over the steps since the last metrics line."""

    loss: float = 0.0
    steps: int = 0
    real: int = 0  # tokens that belong to examples
    slots: int = 0  # token positions fed, padding included
    seconds: float = 0.0


@dataclass
class TrainState:
    """What the loop carries from step to step; a checkpoint keeps the counters and the shapes."""

    step: int = 0  # optimizer steps completed
    real_tokens: int = 0
    train_seconds: float = 0.0
    # Input shapes seen so far, kept across resumes: the report must count every shape the job fed
    # the model, not only those since the last restart.
    input_shapes: set[tuple[int, ...]] = field(default_factory=set)
    last_loss: float = float("nan")
    resumed_from: dict[str, Any] | None = None
    window: Window = field(default_factory=Window)
    # This process's first step (seconds, real tokens): warm-up, and compiling under torch_compile. Not
    # checkpointed: a resumed process pays its own first step.
    first_step: tuple[float, int] | None = None

    @classmethod
    def from_checkpoint(cls, step: int, folder: Path, saved: dict[str, Any]) -> TrainState:
        counters = saved.get("counters", {})
        return cls(
            step=step,
            real_tokens=counters.get("real_tokens", 0),
            train_seconds=counters.get("train_seconds", 0.0),
            input_shapes={tuple(s) for s in saved.get("input_shapes", [])},
            resumed_from={"step": step, "path": str(folder)},
        )

    def to_checkpoint(self) -> dict[str, Any]:
        counters = {"real_tokens": self.real_tokens, "train_seconds": self.train_seconds}
        return {"step": self.step, "counters": counters, "input_shapes": sorted(self.input_shapes)}

    def record_step(self, loss: float, real: int, slots: int, seconds: float) -> None:
        if self.first_step is None:
            self.first_step = (seconds, real)
        self.step += 1
        self.last_loss = loss
        self.real_tokens += real
        self.train_seconds += seconds
        self.window.loss += loss
        self.window.steps += 1
        self.window.real += real
        self.window.slots += slots
        self.window.seconds += seconds


def run(job: TrainJob) -> dict[str, Any]:
    import transformers  # noqa: F401  (before the clock, as always: setup_seconds excludes import time)

    # One writer per checkpoint folder, from before the first checkpoint is read to after the last is
    # written: a second job with the same inputs stops here instead of overwriting this one's checkpoints.
    with WriterLease.for_this_job(job.checkpoint_dir, job.job_name).held() as lease:
        t_setup = time.perf_counter()
        parts = setup(job)
        state = resume(job, parts)
        sink = MetricsSink(job.run_name, job.hp.model_dump())
        setup_seconds = time.perf_counter() - t_setup
        train(job, parts, state, sink, lease)
    eval_loss = evaluate(job, parts, sink)
    return save(job, parts, state, sink, eval_loss, setup_seconds)


def setup(job: TrainJob) -> TrainSetup:
    """Seed, data (validated and packed), model with LoRA, optimizer and schedule."""
    from transformers import get_scheduler

    hp = job.hp
    _seed_everything(hp.seed)
    if hp.num_threads:
        torch.set_num_threads(hp.num_threads)
    device, amp = _pick_device_and_dtype(hp.precision)
    tokenizer = load_tokenizer(job.model_source, job.gguf_file)
    train_data = prepare_for_training(tokenizer, job.train_path, "train", hp)
    val = (
        prepare_for_training(tokenizer, job.validation_path, "validation", hp)
        if job.validation_path
        else None
    )

    model = apply_lora(_load_model(job, amp), job).to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    scheduler = get_scheduler(
        hp.lr_scheduler, optimizer, num_warmup_steps=hp.warmup_steps, num_training_steps=hp.max_steps
    )
    parts = TrainSetup(device, amp, tokenizer, train_data, val, model, trainable, optimizer, scheduler)
    if hp.torch_compile:
        blocker = _compile_blocker(device)
        if blocker:
            log.warning("torch_compile=true, but training eagerly: %s", blocker)
            parts.compile_note = f"eager: {blocker}"
        else:
            parts.compiled = _CompiledForward(model.get_base_model())
            parts.compile_note = "compiled"
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "device=%s precision=%s trainable_params=%d (%.2f%% of %d)",
        device,
        parts.precision,
        parts.n_trainable,
        100 * parts.n_trainable / total,
        total,
    )
    return parts


def resume(job: TrainJob, parts: TrainSetup) -> TrainState:
    """A fresh state, or the newest checkpoint that loads (weights, optimizer, schedule and RNG restored).

    A bad checkpoint (fails its manifest or does not load) is named in the log, set aside and the next
    older one tried, so a corrupt newest checkpoint cannot fail every spot restart of the job."""
    initial = _initial_state(parts.model, parts.optimizer, parts.scheduler)

    def load(folder: Path) -> dict[str, Any]:
        try:
            return _load_trainer_state(folder, parts.model, parts.optimizer, parts.scheduler)
        except Exception as exc:
            if _is_unreadable(exc) or not _does_not_fit(exc):
                raise
            raise CheckpointDoesNotFit(
                f"checkpoint {folder} is intact (it matches its manifest) but does not fit this run: "
                f"{type(exc).__name__}: {str(exc)[:300]}. It was written with other settings (lora_r, "
                "lora_target_modules, the optimizer) or another version of the code. Resume with the "
                "settings it was written with, or train into another checkpoint location (locally another "
                "--run-id; in the pipeline, changed inputs get a new checkpoint prefix)"
            ) from None

    found, set_aside = load_newest(job.checkpoint_dir, load, _is_unreadable)
    if found is None:
        if set_aside:
            _restore_initial_state(parts.model, parts.optimizer, parts.scheduler, initial)
            log.warning(
                "no checkpoint in %s could be loaded (set aside: %s); starting from step 0. That is safe: "
                "the adapter, optimizer, schedule and RNG are back to their initial state, and the bad "
                "checkpoints are kept for inspection",
                job.checkpoint_dir,
                ", ".join(p.name for p in set_aside),
            )
        return TrainState()
    step, folder, saved = found
    log.info("resumed from checkpoint %s (step %d of %d)", folder, step, job.hp.max_steps)
    return TrainState.from_checkpoint(step, folder, saved)


def train(
    job: TrainJob, parts: TrainSetup, state: TrainState, sink: MetricsSink, lease: WriterLease | None = None
) -> None:
    """Steps from ``state.step`` to ``max_steps``: a metrics line every ``logging_steps``, a checkpoint
    every ``save_steps`` (each one first checks that ``lease`` is still ours). A failure marks the MLflow
    run FAILED."""
    from tqdm.auto import tqdm

    hp = job.hp
    ga = hp.gradient_accumulation_steps
    bar = None
    try:
        sampler = BlockSampler(parts.train.blocks.num_blocks, hp.per_device_train_batch_size, hp.seed)
        batches = _Batches(parts.train.blocks, sampler, parts.device)
        bar = tqdm(
            total=hp.max_steps,
            initial=state.step,
            desc="fine-tune",
            unit="step",
            disable=not progress_wanted(),
        )
        for step in range(state.step, hp.max_steps):
            t0 = time.perf_counter()
            micro = [batches.get(step * ga + i) for i in range(ga)]
            loss, real, slots = train_step(parts, micro, state, hp.max_grad_norm)
            state.record_step(loss, real, slots, time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if state.step % hp.logging_steps == 0 or state.step == hp.max_steps:
                sink.log(state.step, _window_metrics(state.window, parts, sampler.epoch(state.step * ga)))
                state.window = Window()
            if state.step % hp.save_steps == 0 and state.step < hp.max_steps:
                _save_checkpoint(job, parts, state, lease)
    except BaseException:
        sink.finish({}, status="FAILED")
        raise
    finally:
        if bar is not None:
            bar.close()


def train_step(
    parts: TrainSetup, micro: list[Micro], state: TrainState, max_grad_norm: float
) -> tuple[float, int, int]:
    """One optimizer step over the micro-batches: (loss per target token, real tokens, token slots)."""
    # Normalize by the targets of the whole optimizer step, not per micro-batch, so
    # gradient accumulation gives the same gradient as one big batch.
    n_targets = max(sum(int((lab[:, 1:] != IGNORE_INDEX).sum()) for _, lab, _, _ in micro), 1)
    # (The count token_loss_sum returns is the same number per micro-batch; we need the whole
    # step's total before the first backward, so it is computed once here instead.)
    step_loss, real_tokens, slots = 0.0, 0, 0
    for ids, labels, pos, real in micro:
        state.input_shapes.add(tuple(ids.shape))
        with torch.autocast(parts.device.type, dtype=parts.amp, enabled=parts.amp is not None):
            loss_sum = _forward(parts, ids, labels, pos)
        (loss_sum / n_targets).backward()
        step_loss += loss_sum.item() / n_targets
        real_tokens += real
        slots += ids.numel()
    torch.nn.utils.clip_grad_norm_(parts.trainable, max_grad_norm)
    parts.optimizer.step()
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return step_loss, real_tokens, slots


def _forward(parts: TrainSetup, ids: torch.Tensor, labels: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The loss sum of one micro-batch. torch.compile compiles on the first call; if that fails, say why
    and run this and every later step eagerly (nothing was computed yet, so the step is the same)."""
    loss = partial(token_loss_sum, ids=ids, labels=labels, pos=pos)
    compiled = parts.compiled
    if compiled is None or compiled.failed:
        return loss(parts.model.get_base_model())[0]
    try:
        return loss(compiled)[0]
    except Exception as exc:  # torch._dynamo / inductor errors have no common base class worth naming
        compiled.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        parts.compile_note = f"eager: compiling failed ({compiled.failed})"
        log.warning("torch_compile=true, but compiling failed, training eagerly: %s", compiled.failed)
        return loss(parts.model.get_base_model())[0]


def _window_metrics(window: Window, parts: TrainSetup, epoch: float) -> dict[str, float]:
    return {
        "train_loss": window.loss / window.steps,
        "learning_rate": parts.scheduler.get_last_lr()[0],
        "tokens_per_second": window.real / window.seconds,
        "padding_fraction": 1 - window.real / window.slots,
        "epoch": epoch,
    }


def _save_checkpoint(
    job: TrainJob, parts: TrainSetup, state: TrainState, lease: WriterLease | None = None
) -> None:
    saved_state = state.to_checkpoint()

    def write_state(folder: Path) -> None:
        _save_trainer_state(folder, parts.model, parts.optimizer, parts.scheduler, saved_state)

    saved = save_checkpoint(
        job.checkpoint_dir, state.step, write_state, keep=job.hp.save_total_limit, lease=lease
    )
    log.info("checkpoint saved: %s", saved)


def evaluate(job: TrainJob, parts: TrainSetup, sink: MetricsSink) -> float | None:
    """eval_loss on the validation channel, when there is one."""
    if parts.val is None:
        return None
    hp = job.hp
    eval_loss, _ = mean_token_loss(
        parts.model.get_base_model(),
        parts.val.blocks,
        hp.per_device_train_batch_size,
        parts.device,
        parts.amp,
    )
    sink.log(hp.max_steps, {"eval_loss": eval_loss})
    return eval_loss


def save(
    job: TrainJob,
    parts: TrainSetup,
    state: TrainState,
    sink: MetricsSink,
    eval_loss: float | None,
    setup_seconds: float,
) -> dict[str, Any]:
    """The merged model, then the training report beside it."""
    hp = job.hp
    mfu = _mfu(job, parts, state)
    save_merged(parts.model, parts.tokenizer, job.model_dir, hp.save_dtype)
    report = build_report(
        job=job,
        backend=name,
        steps_completed=hp.max_steps,
        resumed_from=state.resumed_from,
        final={"train_loss": state.last_loss, **({"eval_loss": eval_loss} if eval_loss is not None else {})},
        real_tokens=int(state.real_tokens),
        train_seconds=state.train_seconds,
        setup_seconds=setup_seconds,
        input_shapes=sorted(state.input_shapes),
        data={"train": parts.train.stats, **({"validation": parts.val.stats} if parts.val else {})},
        extra={
            "device": str(parts.device),
            "precision": parts.precision,
            "trainable_params": parts.n_trainable,
            "mfu": mfu,
            "compile": parts.compile_note,
            # This process's first step (warm-up, compiling): tokens/s without it is steady state.
            "first_step": {"seconds": round(state.first_step[0], 3), "real_tokens": state.first_step[1]}
            if state.first_step
            else None,
        },
        mlflow_run_id=sink.run_id,
    )
    write_report(job.model_dir, report)
    sink.finish(report["final_metrics"])
    log.info("model saved to %s; report %s", job.model_dir, job.model_dir / "training_report.json")
    log.info(
        "report summary: %s",
        json.dumps({k: report[k] for k in ("steps_completed", "tokens_per_second", "distinct_input_shapes")}),
    )
    return report
