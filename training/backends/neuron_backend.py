"""Trainium backend: optimum-neuron's ``NeuronSFTTrainer`` launched by torchrun.

NOT EXECUTED IN CI OR ON DEVELOPER LAPTOPS: there is no Neuron hardware or SDK there. This module
is kept small and import-guarded; what surrounds the SDK call (launch command, environment,
trainer arguments, the error when the SDK is missing) is unit-tested in tests/test_neuron_backend.py.
It runs for real only inside the Neuron training image on trn1/trn2.

Flow on a trn1 instance:
1. ``containers.entrypoint train`` (this process, rank-less) builds the torchrun command with
   ``SM_NUM_NEURONS`` processes per node and the Neuron environment, and runs it. With
   ``precompile=true`` the same command is wrapped in ``neuron_parallel_compile``, which runs a few
   steps to extract graphs and compiles them in parallel into the persistent cache; that pass's
   outputs are not training results, so nothing is saved from it.
2. Each torchrun worker re-enters ``containers.entrypoint train --neuron-worker`` and calls
   ``run_worker``: the same validated, packed blocks as the torch backend, handed to the trainer
   as a pre-tokenized dataset (one static shape).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from typing import Any

from training.errors import UserError
from training.hyperparameters import TrainHyperparameters
from training.job import TrainJob

log = logging.getLogger(__name__)

# Recommended by the Neuron docs for transformer training; --retry_failed_compilation makes a
# transient compiler failure (e.g. host OOM during parallel compile) retry instead of failing the job.
NEURON_CC_FLAGS = "--model-type transformer --retry_failed_compilation"
# glibc's per-thread arenas bloat host memory with many XLA threads; 64 is the Neuron guidance.
MALLOC_ARENA_MAX = "64"
PRECOMPILE_MAX_STEPS = 10


def neuron_sdk_available() -> bool:
    """True only where the real SDK is importable (the PyPI placeholders are never installed)."""
    # find_spec("optimum.neuron") imports the parent package, so check `optimum` exists first.
    if importlib.util.find_spec("optimum") is None:
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("torch_neuronx", "optimum.neuron"))


def processes_per_node(env: dict[str, str]) -> int:
    """SageMaker sets SM_NUM_NEURONS (2 on trn1.2xlarge, 32 on trn1.32xlarge); optimum-neuron reads no SM_* vars."""
    raw = env.get("SM_NUM_NEURONS")
    if raw is None:
        raise UserError(
            "SM_NUM_NEURONS is not set, so the number of Neuron cores is unknown; run on a SageMaker trn1/trn2 "
            "training job, or export SM_NUM_NEURONS=<cores> (e.g. 2 on trn1.2xlarge)"
        )
    try:
        n = int(raw)
    except ValueError:
        raise UserError(f"SM_NUM_NEURONS={raw!r} is not an integer") from None
    if n < 1:
        raise UserError(f"SM_NUM_NEURONS={n}: need at least one Neuron core")
    return n


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


def launch_command(hp: TrainHyperparameters, env: dict[str, str], python: str = sys.executable) -> list[str]:
    n = processes_per_node(env)
    check_parallelism(hp, n)
    nodes = int(env.get("SM_HOST_COUNT", "1"))
    cmd = [
        "torchrun",
        f"--nproc_per_node={n}",
        f"--nnodes={nodes}",
    ]
    if nodes > 1:
        cmd += [
            f"--node_rank={env['SM_CURRENT_HOST_RANK']}",
            f"--master_addr={env['SM_MASTER_ADDR']}",
            "--master_port=7777",
        ]
    cmd += ["-m", "containers.entrypoint", "train", "--neuron-worker"]
    if hp.precompile:
        cmd = ["neuron_parallel_compile", *cmd]
    return cmd


def run(job: TrainJob) -> dict[str, Any]:
    env = neuron_env(job.hp, dict(os.environ))
    cmd = launch_command(job.hp, env)
    log.info("launching: %s", " ".join(cmd))
    result = subprocess.run(cmd, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"Neuron training workers exited with status {result.returncode}; see the log above")
    return {}


def run_worker(job: TrainJob) -> None:  # pragma: no cover - needs the Neuron SDK and a trn instance
    raise NotImplementedError
