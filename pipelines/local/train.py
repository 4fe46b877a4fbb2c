"""``mlops train --local``: the FineTune step alone, as the local job runner runs it in a pipeline.

A run folder under ``<store>/runs/<run-id>/`` is laid out like ``/opt/ml`` by the container contract
(hyperparameters as strings, inputdataconfig.json, resourceconfig.json, channels, model,
checkpoints, output/failure), and ``jobs.run_job``
starts the train entrypoint with ``MLOPS_OPT_ML`` pointing at it. Reusing a run id resumes from its
newest complete checkpoint (which SageMaker keeps across attempts); ``model/`` starts empty on every
attempt, as SageMaker's ``/opt/ml/model`` does. The job runs from the checkout with this Python, and
``train.log`` keeps every attempt, each under its command line. The base model is
``model.local_source`` (``pipelines/local/base_model.py``).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

from config.schema import ProjectConfig
from containers.contract import TRAINING, OptMl
from pipelines.local.base_model import local_base_model
from pipelines.local.executor import disk_full_message
from pipelines.local.jobs import (
    FILE_CHANNEL,
    TRAIN_COMMAND,
    JobFailed,
    JobSpec,
    empty_model_dir,
    run_job,
    training_given,
)
from pipelines.local.lock import store_lock
from pipelines.local.registry import tracking_uri
from pipelines.local.store import private_store, run_folder
from training.errors import UserError
from training.files import DISK_FULL
from training.hyperparameters import to_sagemaker_strings
from training.job import Cluster


@dataclass
class LocalRun:
    root: Path
    returncode: int  # the job's exit status
    reason: str = ""  # why it failed: the job's failure file, or its exit status when it wrote none

    @property
    def opt_ml(self) -> OptMl:
        return OptMl(self.root)

    @property
    def model_dir(self) -> Path:
        return self.opt_ml.model_dir

    @property
    def report(self) -> Path:
        return self.model_dir / "training_report.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


def prepare_run_folder(config: ProjectConfig, root: Path, base_model: Path) -> None:
    """Lay out ``root`` like /opt/ml for a training job."""
    opt_ml = OptMl(root)
    opt_ml.write_hyperparameters(to_sagemaker_strings(config.training))
    opt_ml.write_resource_config(TRAINING, Cluster.single(config.pipeline.instances.train))
    channels = {"train": config.data.train, "validation": config.data.validation, "model": str(base_model)}
    opt_ml.write_input_data_config(
        {name: FILE_CHANNEL for name, path in channels.items() if path is not None}
    )
    for channel, path in (("train", config.data.train), ("validation", config.data.validation)):
        if path is None:
            continue
        src = Path(path)
        if not src.exists():
            raise UserError(f"data.{channel}={path!r}: no such file or folder")
        # A file becomes the single file of its channel folder, as an S3 prefix with one object would.
        folder = opt_ml.input_data(channel)
        _link(src, folder / src.name if src.is_file() else folder)
    _link(base_model, opt_ml.input_data("model"))


def run_training(config: ProjectConfig, run_id: str | None = None) -> LocalRun:
    store = private_store(Path(config.local.store_dir).resolve())
    run_id = run_id or "train-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = run_folder(store, run_id, "--run-id")
    # The store's lock: a concurrent run could otherwise share this run folder and its checkpoints.
    try:
        with store_lock(store, "mlops train --local", run_id):
            return _train(config, store, run_id, root)
    except OSError as exc:  # the job reports its own; this is the run folder, the lock, the base model
        if exc.errno not in DISK_FULL:
            raise
        then = f"run again with --run-id {run_id}: training resumes from the last complete checkpoint"
        raise UserError(disk_full_message(exc, store, then)) from None


def _train(config: ProjectConfig, store: Path, run_id: str, root: Path) -> LocalRun:
    base_model = local_base_model(config, store)
    prepare_run_folder(config, root, base_model)
    empty_model_dir(OptMl(root))  # as for every attempt of a pipeline's FineTune; checkpoints stay
    # The job's output reaches us through a pipe: plain log lines, as in a pipeline step.
    env = {"MLOPS_PROGRESS": "0"}
    if config.local.mlflow == "sqlite":
        env["MLFLOW_TRACKING_URI"] = tracking_uri(store.resolve())
    spec = JobSpec("FineTune", "local", TRAIN_COMMAND, env, root, TRAINING, training_given(run_id))
    try:
        run_job(
            spec,
            root / "train.log",
            docker=False,
            on_line=lambda line: print(line, flush=True, file=sys.stdout),
        )
    except JobFailed as failed:
        return LocalRun(root=root, returncode=failed.returncode, reason=failed.reason)
    return LocalRun(root=root, returncode=0)
