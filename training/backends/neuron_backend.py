"""Trainium backend: optimum-neuron's ``NeuronSFTTrainer`` launched by torchrun.

NOT EXECUTED IN CI OR ON DEVELOPER LAPTOPS: there is no Neuron hardware or SDK there. This module
is kept small and import-guarded; what surrounds the SDK calls (launch command, environment,
trainer arguments, the batch collator, failure propagation, adapter-config placement, the CPU merge
of the consolidated adapter, the error when the SDK is missing) is unit-tested in
tests/test_neuron_backend.py and tests/test_export.py. It runs for real only inside the Neuron
training image on trn1/trn2. Written against optimum-neuron 0.4.5 (containers/requirements-train.txt).

Flow on a trn1 instance:
1. ``containers.entrypoint train`` (this process, rank-less) builds the torchrun command with one
   process per NeuronCore counted on the machine (``training/neuron_cores.py``), the hosts and this
   node's rank from ``resourceconfig.json``, and the Neuron environment, and runs it. With
   ``precompile=true`` the same command is wrapped in ``neuron_parallel_compile``, which runs a few
   steps to extract graphs and compiles them in parallel into the persistent cache; that pass's
   outputs are not training results, so nothing is saved from it.
2. Each torchrun worker re-enters ``containers.entrypoint train --neuron-worker`` and calls
   ``run_worker``: the same validated, packed blocks as the torch backend, handed to the trainer
   as a pre-tokenized dataset, batched by a collator that always yields one static shape.
3. ``trainer.save_model`` writes tensor-parallel adapter shards; rank 0 consolidates them into one
   PEFT adapter (``model_dir/adapter``), merges it into the base on CPU and writes the report.

Known differences from the torch backend, all imposed by optimum-neuron 0.4.5:
* No resume: ``NeuronTrainer.train(resume_from_checkpoint=...)`` raises. Checkpoints are still
  written every ``save_steps`` (``checkpoints/neuron/checkpoint-N``), but a restarted spot job starts
  again from step 0 and says so in its log and report.
* Packed examples attend to earlier examples in their block (see ``StackBlocks``).
* No ``eval_loss``: NeuronTrainer has no evaluation loop; the validation channel is still validated.
* ``tokens_per_second`` is estimated from the mean real tokens per block (callbacks see no batches).
* MFU (``neuron_mfu``) is stated against the published BF16 peak per (logical) NeuronCore
  (training/neuron_peaks.py) times the workers, not a measured one: the torch backend times a matmul
  because a CPU's vendor peak is rarely reached (training/mfu.py); a NeuronCore's is its data sheet.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.checkpoints import WriterLease
from training.errors import UserError
from training.hyperparameters import TrainHyperparameters
from training.job import Cluster, TrainJob
from training.neuron_cores import instance_family, logical_core_size, workers_per_node
from training.neuron_peaks import PEAK_SOURCE, bf16_peak_flops_per_core
from training.neuron_sdk import MALLOC_ARENA_MAX, NEURON_CC_FLAGS, check_model_family, read_model_config

if TYPE_CHECKING:
    from training.packing import PreparedData

log = logging.getLogger(__name__)

name = "neuron"

PRECOMPILE_MAX_STEPS = 10


def check_parallelism(hp: TrainHyperparameters, n_procs: int) -> None:
    if n_procs % hp.tensor_parallel_size:
        raise UserError(
            f"tensor_parallel_size={hp.tensor_parallel_size} does not divide the {n_procs} Neuron cores of this "
            "instance; pick a divisor (e.g. 1, 2, 8 or 32 on trn1.32xlarge)"
        )


def neuron_env(hp: TrainHyperparameters, env: dict[str, str]) -> dict[str, str]:
    """The environment for torchrun and its workers."""
    out = dict(env)
    out.setdefault("NEURON_CC_FLAGS", NEURON_CC_FLAGS)
    out.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
    # The persistent compile cache: a second run with the same shapes and flags skips compiling.
    # The pipeline points it at an S3 prefix; without one, compiles stay on the instance and are lost.
    if not out.get("NEURON_COMPILE_CACHE_URL"):
        log.warning(
            "NEURON_COMPILE_CACHE_URL is not set: compiled graphs will not be reused by the next job "
            "(set it to an s3:// prefix)"
        )
    return out


MASTER_PORT = 7777  # any free port: every node runs only our job (one training container per instance)


def launch_command(hp: TrainHyperparameters, cluster: Cluster, workers: int) -> list[str]:
    """torchrun with one worker per NeuronCore on each of the job's hosts.

    Hosts, this node's rank and the rendezvous host come from ``resourceconfig.json`` (``cluster``):
    every node sorts the same host list, so they agree on ranks and on the first host as master, as
    the SageMaker training toolkit does (aws/sagemaker-training-toolkit environment.py). A multi-node
    job therefore always trains as one job: no node can start alone with ``--nnodes=1``.
    """
    check_parallelism(hp, workers)
    cmd = ["torchrun", f"--nproc_per_node={workers}", f"--nnodes={cluster.size}"]
    if cluster.size > 1:
        cmd += [
            f"--node_rank={cluster.rank}",
            f"--master_addr={cluster.master}",
            f"--master_port={MASTER_PORT}",
        ]
    cmd += ["-m", "containers.entrypoint", "train", "--neuron-worker"]
    if hp.precompile:
        cmd = ["neuron_parallel_compile", *cmd]
    return cmd


def sft_config_kwargs(
    hp: TrainHyperparameters, output_dir: Path, precompile: bool, interactive: bool
) -> dict[str, Any]:
    """Keyword arguments for optimum-neuron's ``NeuronSFTConfig`` (v0.4.5 names), from our hyperparameters."""
    max_steps = min(hp.max_steps, PRECOMPILE_MAX_STEPS) if precompile else hp.max_steps
    return {
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "max_steps": max_steps,
        "learning_rate": hp.learning_rate,
        "lr_scheduler_type": hp.lr_scheduler,
        "warmup_steps": hp.warmup_steps,
        "weight_decay": hp.weight_decay,
        "max_grad_norm": hp.max_grad_norm,
        "per_device_train_batch_size": hp.per_device_train_batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "seed": hp.seed,
        "logging_steps": hp.logging_steps,
        # The graph-extraction pass produces no usable weights: save nothing from it.
        "save_strategy": "no" if precompile else "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": hp.save_total_limit,
        # Trainium trains in bf16; precision=fp32 is honoured but is several times slower there.
        "bf16": hp.precision != "fp32",
        "tensor_parallel_size": hp.tensor_parallel_size,
        "zero_1": hp.zero_1,
        "gradient_checkpointing": hp.gradient_checkpointing,
        # NeuronSFTTrainer reads this dict when wrapping the model with PEFT and fails on None (v0.4.5);
        # reentrant checkpointing with frozen embeddings needs the inputs to require grad, which
        # the trainer arranges when use_reentrant is true.
        "gradient_checkpointing_kwargs": {"use_reentrant": True},
        # Our blocks are already tokenized, loss-masked and exactly max_length long.
        "max_length": hp.max_seq_length,
        "packing": False,
        "dataset_kwargs": {"skip_prepare_dataset": True},
        "remove_unused_columns": False,
        # A short last batch would be a new input shape, i.e. a multi-minute recompile.
        "dataloader_drop_last": True,
        # Metrics go out through our own `metrics ...` lines and MLflow sink (rank 0 only).
        "report_to": [],
        "disable_tqdm": not interactive,
    }


def existing_trainer_checkpoints(output_dir: Path) -> list[Path]:
    return sorted(
        output_dir.glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )


def check_base_model(job: TrainJob) -> None:
    """Before torchrun starts a worker per NeuronCore: the base model is of a family optimum-neuron 0.4.5
    trains (training/neuron_sdk.py) and every LoRA target names linear layers of it. Both would otherwise
    fail in every worker, after the job paid for the instance and its data work. The targets are checked
    on the Hugging Face model built on the meta device (no weights read): optimum-neuron maps those names
    onto its fused layers itself (``adapt_peft_config_for_model``, optimum/neuron/models/training/
    transformations_utils.py, v0.4.5)."""
    config = read_model_config(Path(job.model_source))
    if config is None:
        return  # a Hub id or a GGUF file: run_worker and the loader say what is wrong with those
    check_model_family(config, str(Path(job.model_source) / "config.json"), "training")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from training.backends import resolve_lora_targets

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(job.model_source))
    resolve_lora_targets(model, job.hp.lora_target_modules)


def run(job: TrainJob) -> dict[str, Any]:
    check_base_model(job)
    env = neuron_env(job.hp, dict(os.environ))
    workers = workers_per_node(job.cluster.instance_type, env)
    cmd = launch_command(job.hp, job.cluster, workers)
    log.info("launching: %s", " ".join(cmd))
    # The workers write checkpoints under checkpoint_dir/neuron: hold the folder's writer lease (with its
    # heartbeat) for as long as they run, so a second job with the same inputs refuses to start there.
    # NeuronTrainer saves on its own, so a lease lost meanwhile is logged rather than checked per save.
    with WriterLease.for_this_job(job.checkpoint_dir, job.job_name).held():
        result = subprocess.run(cmd, env=env, check=False)
    if result.returncode != 0:
        raise worker_failure(result.returncode, job.failure_file)
    report_file = job.model_dir / "training_report.json"
    return json.loads(report_file.read_text()) if report_file.exists() else {}


def worker_failure(returncode: int, failure_file: Path | None) -> Exception:
    """The error to raise when torchrun fails. torchrun's own status says nothing about why, but a
    worker that hit a user error (bad data, bad config) wrote it to the failure file: keep that as a
    user error instead of burying it under a generic launcher failure."""
    reason = (
        failure_file.read_text(encoding="utf-8").strip() if failure_file and failure_file.is_file() else ""
    )
    if reason and not reason.startswith("internal error"):
        return UserError(reason)
    detail = f": {reason}" if reason else "; see the log above"
    return RuntimeError(f"Neuron training workers exited with status {returncode}{detail}")


# ---- everything below runs only inside the Neuron training image, under torchrun --------------------


def _blocks_dataset(blocks: Any) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": blocks.input_ids.tolist(), "labels": blocks.labels.tolist()})


class StackBlocks:
    """Collator for our fixed-length blocks: stack, add an all-ones attention mask (what TRL's collator
    sends), and record every batch shape so the report can say how many the model saw.

    Packed examples attend to earlier examples in the same block on Neuron: optimum-neuron 0.4.5's
    training models build a plain causal mask (``recompute_causal_mask=True``; the NKI flash-attention
    kernel takes no segment ids), exactly as with its own ``packing=True``. The loss still covers only
    each example's own target tokens. The torch backend has no such cross-attention.
    """

    def __init__(self) -> None:
        self.shapes: set[tuple[int, ...]] = set()

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        self.shapes.add(tuple(ids.shape))
        return {
            "input_ids": ids,
            "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
            "attention_mask": torch.ones_like(ids),
        }


@dataclass(frozen=True)
class Worker:
    """This torchrun process: its rank, the world size, and whether this is the graph-extraction pass."""

    rank: int
    world: int
    precompile: bool

    @classmethod
    def from_env(cls, hp: TrainHyperparameters, env: Mapping[str, str]) -> Worker:
        return cls(
            rank=int(env.get("RANK", "0")),
            world=int(env.get("WORLD_SIZE", "1")),
            precompile=hp.precompile or env.get("NEURON_EXTRACT_GRAPHS_ONLY") == "1",
        )


@dataclass
class WorkerMetrics:
    """Rank 0's ``metrics ...`` lines from the trainer's log events, and what the report needs of them."""

    sink: Any  # a MetricsSink on rank 0, None elsewhere
    # Estimated from the dataset's mean real tokens per block: the callback does not see batches.
    tokens_per_step: float
    padding_fraction: float
    last: float  # perf_counter() at the previous log event (at first: when training was set up)
    last_step: int = 0
    train_seconds: float = 0.0
    loss: float = float("nan")

    def on_log(self, global_step: int, logs: dict[str, float] | None) -> None:
        if self.sink is None or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        steps = global_step - self.last_step
        seconds = now - self.last
        self.last, self.last_step, self.loss = now, global_step, logs["loss"]
        self.train_seconds += seconds
        self.sink.log(
            global_step,
            {
                "train_loss": logs["loss"],
                "learning_rate": logs.get("learning_rate", float("nan")),
                "tokens_per_second": self.tokens_per_step * steps / seconds if seconds > 0 else 0.0,
                "padding_fraction": self.padding_fraction,
            },
        )


def run_worker(job: TrainJob) -> None:  # pragma: no cover - needs the Neuron SDK and a trn instance
    """One torchrun process: the same prepared blocks as the torch backend, trained by NeuronSFTTrainer.
    Reads top to bottom: setup -> train -> save (rank 0 consolidates, merges and reports)."""
    # The SDK first, as it always was: a missing or broken install fails before any data work, and its
    # import time stays out of setup_seconds. _build_trainer's own imports then cost nothing.
    import optimum.neuron  # noqa: F401
    import optimum.neuron.models.training  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from training.base_model import load_tokenizer
    from training.prepare import prepare_for_training

    hp = job.hp
    worker = Worker.from_env(hp, os.environ)
    if job.gguf_file:
        raise UserError(
            f"backend=neuron needs a Hugging Face safetensors model folder, got the GGUF file {job.gguf_file}; "
            "convert it first (training.base_model.convert_gguf_to_hf) and pass that folder as the `model` channel"
        )
    t_setup = time.perf_counter()
    output_dir = job.checkpoint_dir / "neuron"
    stale = _stale_checkpoints(output_dir, worker.precompile)
    tokenizer = load_tokenizer(job.model_source)
    train = prepare_for_training(tokenizer, job.train_path, "train", hp)
    if job.validation_path:
        # Validated so bad data fails here too; NeuronTrainer has no evaluation loop (v0.4.5), so no eval_loss.
        prepare_for_training(tokenizer, job.validation_path, "validation", hp)
    trainer, collator, metrics = _build_trainer(job, worker, output_dir, tokenizer, train)
    setup_seconds = time.perf_counter() - t_setup

    trainer.train()

    if worker.precompile:
        log.info("precompile pass done: graphs are in the compile cache; no model was saved")
        return
    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))  # collective: every rank writes its adapter shard
    if worker.rank != 0:
        return
    _export_on_rank0(job, final_dir, tokenizer)
    _write_report(
        job, worker, trainer.state.global_step, train, metrics, collator.shapes, stale, setup_seconds
    )


def _stale_checkpoints(output_dir: Path, precompile: bool) -> list[Path]:
    stale = existing_trainer_checkpoints(output_dir)
    if stale and not precompile:
        # optimum-neuron 0.4.5 raises on resume_from_checkpoint; restarting is correct but repeats work.
        log.warning(
            "found %d earlier checkpoint(s) (newest %s) but optimum-neuron 0.4.5 cannot resume; "
            "training restarts from step 0",
            len(stale),
            stale[-1],
        )
    return stale


def _build_trainer(
    job: TrainJob, worker: Worker, output_dir: Path, tokenizer: Any, train: PreparedData
) -> tuple[Any, StackBlocks, WorkerMetrics]:  # pragma: no cover - Neuron SDK
    """NeuronSFTTrainer over the packed blocks, with LoRA, our collator and our metrics lines."""
    import torch
    from optimum.neuron import NeuronSFTConfig, NeuronSFTTrainer
    from optimum.neuron.models.training import NeuronModelForCausalLM
    from peft import LoraConfig
    from transformers import TrainerCallback

    from training.metrics import MetricsSink, progress_wanted

    hp = job.hp
    config = NeuronSFTConfig(**sft_config_kwargs(hp, output_dir, worker.precompile, progress_wanted()))
    model = NeuronModelForCausalLM.from_pretrained(
        job.model_source, config.trn_config, torch_dtype=torch.bfloat16 if config.bf16 else torch.float32
    )
    lora = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    collator = StackBlocks()
    data_parallel = max(worker.world // hp.tensor_parallel_size, 1)
    tokens_per_step = (
        train.stats["real_tokens"]
        / train.blocks.num_blocks
        * hp.per_device_train_batch_size
        * hp.gradient_accumulation_steps
        * data_parallel
    )
    sink = MetricsSink(job.run_name, hp.model_dump()) if worker.rank == 0 else None
    metrics = WorkerMetrics(sink, tokens_per_step, train.stats["padding_fraction"], last=time.perf_counter())

    class MetricLines(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ) -> None:
            metrics.on_log(state.global_step, logs)

    trainer = NeuronSFTTrainer(
        model=model,
        args=config,
        train_dataset=_blocks_dataset(train.blocks),
        processing_class=tokenizer,
        peft_config=lora,
        data_collator=collator,
        callbacks=[MetricLines()],
    )
    return trainer, collator, metrics


def _write_report(
    job: TrainJob,
    worker: Worker,
    steps: int,
    train: PreparedData,
    metrics: WorkerMetrics,
    shapes: set[tuple[int, ...]],
    stale: list[Path],
    setup_seconds: float,
) -> None:
    from training.report import build_report, write_report

    report = build_report(
        job=job,
        backend=name,
        steps_completed=steps,
        resumed_from=None,
        final={"train_loss": metrics.loss},
        real_tokens=int(metrics.tokens_per_step * steps),
        train_seconds=metrics.train_seconds,
        setup_seconds=setup_seconds,
        input_shapes=sorted(shapes),
        data={"train": train.stats},
        extra={
            "device": "neuron",
            "world_size": worker.world,
            "tensor_parallel_size": job.hp.tensor_parallel_size,
            "restarted_despite_checkpoints": [str(p) for p in stale],
            "mfu": neuron_mfu(
                job,
                worker.world,
                metrics.tokens_per_step * steps / metrics.train_seconds if metrics.train_seconds else None,
                os.environ,
            ),
        },
        mlflow_run_id=metrics.sink.run_id if metrics.sink else None,
    )
    write_report(job.model_dir, report)
    if metrics.sink:
        metrics.sink.finish(report["final_metrics"])


def neuron_mfu(
    job: TrainJob, world: int, tokens_per_second: float | None, env: Mapping[str, str]
) -> dict[str, Any]:
    """The report's ``mfu`` block: real tokens per second (all ranks) x the planner's FLOPs per token, over
    the published BF16 peak of one (logical) NeuronCore times the ``world`` workers, one per core
    (training/neuron_cores.py). Where the instance family or the model's config.json is unknown, ``mfu`` is
    None and ``peak_source`` says why: never a guessed peak."""
    from types import SimpleNamespace

    from training.mfu import mfu_report

    family = instance_family(job.cluster.instance_type) if job.cluster.instance_type else ""
    lnc = logical_core_size(family, env)
    per_core = bf16_peak_flops_per_core(family, lnc)
    config = read_model_config(Path(job.model_source))
    unknown = []
    if per_core is None:
        unknown.append(
            f"no published BF16 peak for instance type {job.cluster.instance_type or '(unknown)'!r}"
        )
    if config is None:
        unknown.append(f"no config.json in {job.model_source} to count FLOPs per token from")
    if unknown:
        return {"mfu": None, "tokens_per_second": tokens_per_second, "peak_source": "; ".join(unknown)}
    assert per_core is not None and config is not None  # for mypy: `unknown` is empty
    lnc_note = f", LNC={lnc}: one logical core is {lnc} physical ones" if family == "trn2" else ""
    return mfu_report(
        SimpleNamespace(**config),
        sequence_length=job.hp.max_seq_length,
        lora_rank=job.hp.lora_r,
        lora_target_modules=list(job.hp.lora_target_modules),
        tokens_per_second=tokens_per_second,
        peak_flops=per_core * world,
        peak_source=f"{PEAK_SOURCE[family]}{lnc_note}; {per_core / 1e12:g} TFLOPS per core x {world} workers",
    )


def _export_on_rank0(job: TrainJob, final_dir: Path, tokenizer: Any) -> None:  # pragma: no cover - Neuron SDK
    """Tensor-parallel adapter shards -> one PEFT adapter folder -> merged into the base on CPU."""
    from optimum.neuron.models.training import consolidate_model_parallel_checkpoints_to_unified_checkpoint

    from training.export import merge_adapter_folder

    adapter_dir = job.model_dir / "adapter"
    consolidate_model_parallel_checkpoints_to_unified_checkpoint(final_dir, adapter_dir)
    place_adapter_config(final_dir, adapter_dir)
    merge_adapter_folder(job.model_source, adapter_dir, tokenizer, job.model_dir, job.hp.save_dtype)


def place_adapter_config(final_dir: Path, adapter_dir: Path) -> None:
    """NeuronPeftModel.save_pretrained writes adapter_config.json (already mapped back to the original
    module names) next to the shards, not into the consolidated folder; PEFT needs it beside the weights."""
    if (adapter_dir / "adapter_config.json").is_file():
        return
    candidates = [final_dir / "adapter_config.json", final_dir / "adapter_default" / "adapter_config.json"]
    for candidate in candidates:
        if candidate.is_file():
            shutil.copy2(candidate, adapter_dir / "adapter_config.json")
            return
    raise FileNotFoundError(
        f"no adapter_config.json in {', '.join(str(c.parent) for c in candidates)}: the Neuron trainer did not "
        "save the adapter completely"
    )
