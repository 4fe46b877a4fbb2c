"""LoRA fine-tune with plain PyTorch on CPU or CUDA. Reads top to bottom: setup -> train -> save.

Speed on CPU comes from three choices: bf16 autocast (bf16 matmuls are several times faster than
fp32 on CPUs with AVX512-BF16/AMX), packed blocks with no padding waste, and computing the LM head
only at positions that carry loss (the vocabulary projection is a large share of a small model).
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.base_model import load_tokenizer
from training.checkpoints import latest_checkpoint, save_checkpoint
from training.errors import UserError
from training.export import save_merged
from training.job import BlockSampler, TrainJob
from training.loss import mean_token_loss, token_loss_sum
from training.metrics import MetricsSink, progress_wanted
from training.packing import PackedBlocks, PreparedData
from training.prepare import prepare_for_training
from training.report import build_report, write_report
from training.tokenize import IGNORE_INDEX

log = logging.getLogger(__name__)

name = "torch"


def _pick_device_and_dtype(precision: str) -> tuple[torch.device, torch.dtype | None]:
    if torch.cuda.is_available():
        device = torch.device("cuda")
        bf16_ok = torch.cuda.is_bf16_supported()
    else:
        device = torch.device("cpu")
        bf16_ok = True
    if precision == "bf16" or (precision == "auto" and bf16_ok):
        return device, torch.bfloat16
    return device, None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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


def _apply_lora(model: Any, job: TrainJob) -> Any:
    from peft import LoraConfig, get_peft_model

    hp = job.hp
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        linear_names = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise UserError(
            f"lora_target_modules={hp.lora_target_modules} do not match this model ({exc}); "
            f"its linear layers are: {', '.join(linear_names)}"
        ) from None


class _Batches:
    """Tensors for micro-batch m, built from the packed blocks by the sampler."""

    def __init__(self, blocks: PackedBlocks, sampler: BlockSampler, device: torch.device) -> None:
        self.ids = torch.from_numpy(blocks.input_ids)
        self.labels = torch.from_numpy(blocks.labels)
        self.pos = torch.from_numpy(blocks.position_ids)
        self.real = torch.from_numpy(blocks.real_per_block)
        self.sampler = sampler
        self.device = device

    def get(self, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
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
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    _set_rng_state(state.pop("rng"))
    return state


def run(job: TrainJob) -> dict[str, Any]:
    from transformers import get_scheduler

    hp = job.hp
    t_setup = time.perf_counter()
    # ---- setup --------------------------------------------------------------------------------
    _seed_everything(hp.seed)
    if hp.num_threads:
        torch.set_num_threads(hp.num_threads)
    device, amp = _pick_device_and_dtype(hp.precision)
    tokenizer = load_tokenizer(job.model_source, job.gguf_file)
    train: PreparedData = prepare_for_training(tokenizer, job.train_path, "train", hp)
    val = (
        prepare_for_training(tokenizer, job.validation_path, "validation", hp)
        if job.validation_path
        else None
    )

    model = _apply_lora(_load_model(job, amp), job).to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    log.info(
        "device=%s precision=%s trainable_params=%d (%.2f%% of %d)",
        device,
        "bf16-autocast" if amp else "fp32",
        n_trainable,
        100 * n_trainable / sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters()),
    )
    optimizer = torch.optim.AdamW(trainable, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    scheduler = get_scheduler(
        hp.lr_scheduler, optimizer, num_warmup_steps=hp.warmup_steps, num_training_steps=hp.max_steps
    )

    start_step, resumed_from = 0, None
    counters = {"real_tokens": 0, "train_seconds": 0.0}
    # Input shapes seen so far, kept across resumes: the report must count every shape the job fed
    # the model, not only those since the last restart.
    shapes: set[tuple[int, ...]] = set()
    found = latest_checkpoint(job.checkpoint_dir)
    if found:
        start_step, folder = found
        state = _load_trainer_state(folder, model, optimizer, scheduler)
        counters.update(state.get("counters", {}))
        shapes.update(tuple(s) for s in state.get("input_shapes", []))
        resumed_from = {"step": start_step, "path": str(folder)}
        log.info("resumed from checkpoint %s (step %d of %d)", folder, start_step, hp.max_steps)

    sampler = BlockSampler(train.blocks.num_blocks, hp.per_device_train_batch_size, hp.seed)
    batches = _Batches(train.blocks, sampler, device)
    sink = MetricsSink(job.run_name, hp.model_dump())
    window = {"loss": 0.0, "steps": 0, "real": 0, "slots": 0, "seconds": 0.0}
    last_loss = float("nan")
    setup_seconds = time.perf_counter() - t_setup

    # ---- train --------------------------------------------------------------------------------
    from tqdm.auto import tqdm

    bar = tqdm(
        total=hp.max_steps, initial=start_step, desc="fine-tune", unit="step", disable=not progress_wanted()
    )
    ga = hp.gradient_accumulation_steps
    try:
        for step in range(start_step, hp.max_steps):
            t0 = time.perf_counter()
            micro = [batches.get(step * ga + i) for i in range(ga)]
            # Normalize by the targets of the whole optimizer step, not per micro-batch, so
            # gradient accumulation gives the same gradient as one big batch.
            n_targets = max(sum(int((lab[:, 1:] != IGNORE_INDEX).sum()) for _, lab, _, _ in micro), 1)
            # (The count token_loss_sum returns is the same number per micro-batch; we need the whole
            # step's total before the first backward, so it is computed once here instead.)
            step_loss = 0.0
            for ids, labels, pos, real in micro:
                shapes.add(tuple(ids.shape))
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss_sum, _ = token_loss_sum(model.get_base_model(), ids, labels, pos)
                (loss_sum / n_targets).backward()
                step_loss += loss_sum.item() / n_targets
                counters["real_tokens"] += real
                window["real"] += real
                window["slots"] += ids.numel()
            torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0

            done = step + 1
            last_loss = step_loss
            window["loss"] += step_loss
            window["steps"] += 1
            window["seconds"] += elapsed
            counters["train_seconds"] += elapsed
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if done % hp.logging_steps == 0 or done == hp.max_steps:
                sink.log(
                    done,
                    {
                        "train_loss": window["loss"] / window["steps"],
                        "learning_rate": scheduler.get_last_lr()[0],
                        "tokens_per_second": window["real"] / window["seconds"],
                        "padding_fraction": 1 - window["real"] / window["slots"],
                        "epoch": sampler.epoch(done * ga),
                    },
                )
                window = {"loss": 0.0, "steps": 0, "real": 0, "slots": 0, "seconds": 0.0}
            if done % hp.save_steps == 0 and done < hp.max_steps:
                state = {"step": done, "counters": dict(counters), "input_shapes": sorted(shapes)}

                def write_state(folder: Path, state: dict[str, Any] = state) -> None:
                    _save_trainer_state(folder, model, optimizer, scheduler, state)

                saved = save_checkpoint(job.checkpoint_dir, done, write_state, keep=hp.save_total_limit)
                log.info("checkpoint saved: %s", saved)
    except BaseException:
        sink.finish({}, status="FAILED")
        raise
    finally:
        bar.close()

    eval_loss = None
    if val is not None:
        eval_loss, _ = mean_token_loss(
            model.get_base_model(), val.blocks, hp.per_device_train_batch_size, device, amp
        )
        sink.log(hp.max_steps, {"eval_loss": eval_loss})

    # ---- save ---------------------------------------------------------------------------------
    save_merged(model, tokenizer, job.model_dir, hp.save_dtype)

    train_seconds = counters["train_seconds"]
    report = build_report(
        job=job,
        backend=name,
        steps_completed=hp.max_steps,
        resumed_from=resumed_from,
        final={"train_loss": last_loss, **({"eval_loss": eval_loss} if eval_loss is not None else {})},
        real_tokens=int(counters["real_tokens"]),
        train_seconds=train_seconds,
        setup_seconds=setup_seconds,
        input_shapes=sorted(shapes),
        data={"train": train.stats, **({"validation": val.stats} if val else {})},
        extra={
            "device": str(device),
            "precision": "bf16-autocast" if amp else "fp32",
            "trainable_params": n_trainable,
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
