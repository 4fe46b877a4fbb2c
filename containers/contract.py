"""The SageMaker container contract: what SageMaker gives a container, and the one map of ``/opt/ml``.

The entrypoint reads its inputs through it, the pipeline definition names its paths through it, and
the local job runner lays out a job's folder and builds its environment from it, so the three cannot
drift apart and a local job gets what a SageMaker job gets, no more.

What SageMaker gives each kind of container, page by page (docs.aws.amazon.com/sagemaker/latest/dg/...):

* **Training** (``your-algorithms-training-algo-running-container.html``, "How SageMaker AI Provides
  Training Information"): the image is started as ``<image> train``
  (``your-algorithms-training-algo-dockerfile.html``); the environment is the request's
  ``Environment`` plus ``TRAINING_JOB_NAME`` and ``TRAINING_JOB_ARN``, nothing else; SageMaker writes
  ``/opt/ml/input/config/hyperparameters.json`` (every value a string), ``inputdataconfig.json`` (one
  entry per channel), ``resourceconfig.json`` (``current_host``, ``current_instance_type``, ``hosts``,
  ``network_interface_name``: "Distributed Training Configuration" on the same page) and the channels
  under ``/opt/ml/input/data/<channel>``. The model goes to ``/opt/ml/model``; the failure reason to
  ``/opt/ml/output/failure`` (``your-algorithms-training-algo-output.html``). The ``SM_*`` variables
  (``SM_NUM_NEURONS``, ``SM_HOST_COUNT``, ``SM_CHANNEL_*``) are NOT among them: the SageMaker training
  toolkit derives them from these files when it launches a user script
  (aws/sagemaker-training-toolkit ``src/sagemaker_training/environment.py``), and our image replaces the
  entrypoint that would run it.
* **Processing** (``build-your-own-processing-container.html``, "How Amazon SageMaker Processing
  Configures Your Processing Container"): the request's ``Environment``, and
  ``/opt/ml/config/processingjobconfig.json`` and ``/opt/ml/config/resourceconfig.json``; inputs and
  outputs at the ``LocalPath`` folders the request declares (under ``/opt/ml/processing`` here). The
  command is ``ContainerEntrypoint`` + ``ContainerArguments`` (``byoc-run-image.html``). A failed job's
  reason is read from ``/opt/ml/output/message`` (``byoc-metadata.html``: "the ExitMessage field in
  DescribeProcessingJob contains the first 1 KB of this file"), not from ``output/failure``.
* **Serving** (``your-algorithms-inference-code.html``): the image is started as ``<image> serve``
  with the model's ``Environment``, the model archive extracted into ``/opt/ml/model``, and HTTP on
  port 8080.

Locally the same code runs against a run folder by setting ``MLOPS_OPT_ML`` (ours, the one variable the
twin adds, because the folder cannot be at ``/opt/ml`` on a laptop). ``job_environment`` builds a local
job's whole environment: the contract's variables, the request's ``Environment``, and only the
``PASSTHROUGH`` allowlist from the developer's shell.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import UserError
from training.files import write_text_atomic
from training.job import Cluster

DEFAULT_ROOT = "/opt/ml"
ROOT_ENV = "MLOPS_OPT_ML"  # ours, not SageMaker's: where /opt/ml is when a job runs on this machine
# The images' ENTRYPOINT and every step's command; SageMaker appends `train` or `serve` to it.
ENTRYPOINT = ["python", "-m", "containers.entrypoint"]
PROCESSING = f"{DEFAULT_ROOT}/processing"
CHECKPOINTS = f"{DEFAULT_ROOT}/checkpoints"
MODEL = f"{DEFAULT_ROOT}/model"

DOCS = "https://docs.aws.amazon.com/sagemaker/latest/dg/"


@dataclass(frozen=True)
class ContainerKind:
    """What SageMaker gives one kind of container: the variables it sets (besides the request's own
    ``Environment``), the files it writes under /opt/ml before the command starts, and where the
    container leaves its failure reason."""

    name: str
    env: tuple[str, ...]
    files: tuple[str, ...]  # relative to /opt/ml
    failure: str | None  # relative to /opt/ml
    source: str


TRAINING = ContainerKind(
    "training",
    env=("TRAINING_JOB_NAME", "TRAINING_JOB_ARN"),
    files=(
        "input/config/hyperparameters.json",
        "input/config/inputdataconfig.json",
        "input/config/resourceconfig.json",
    ),
    failure="output/failure",
    source=DOCS + "your-algorithms-training-algo-running-container.html",
)
PROCESSING_JOB = ContainerKind(
    "processing",
    env=(),
    files=("config/processingjobconfig.json", "config/resourceconfig.json"),
    failure="output/message",
    source=DOCS + "build-your-own-processing-container.html",
)
SERVING = ContainerKind(
    "serving", env=(), files=(), failure=None, source=DOCS + "your-algorithms-inference-code.html"
)

# What a local job takes from the developer's shell, and why. Nothing else passes: a variable that
# only the developer's shell has would make a rehearsal pass that the cloud job fails.
PASSTHROUGH: dict[str, str] = {
    "PATH": "to find this environment's python and tools (the image sets its own PATH)",
    "HOME": "libraries resolve ~ for their caches (the image has root's HOME)",
    "TMPDIR": "where temporary files go on this machine",
    "OMP_NUM_THREADS": "CPU threads: a shared laptop may cap them (a job instance has its cores to itself)",
    "MKL_NUM_THREADS": "CPU threads, as OMP_NUM_THREADS",
}


def job_environment(
    kind: ContainerKind, request_env: Mapping[str, str], given: Mapping[str, str], root: Path
) -> dict[str, str]:
    """A local job's whole environment: the allowlist from this shell, then the request's
    ``Environment``, then what SageMaker itself sets for ``kind`` (``given``: exactly ``kind.env``),
    then ``MLOPS_OPT_ML``."""
    if set(given) != set(kind.env):
        raise ValueError(f"a {kind.name} container is given {sorted(kind.env)}, not {sorted(given)}")
    shell = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    return {**shell, **request_env, **given, ROOT_ENV: str(root)}


class OutsideOptMl(ValueError):
    """A container path that is not under /opt/ml, so no job folder can hold it."""


@dataclass(frozen=True)
class OptMl:
    root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OptMl:
        source = os.environ if env is None else env
        return cls(Path(source.get(ROOT_ENV, DEFAULT_ROOT)))

    @property
    def hyperparameters_file(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.root / "input" / "config" / "inputdataconfig.json"

    def resource_config_file(self, kind: ContainerKind) -> Path:
        """Training: ``input/config/resourceconfig.json``; processing: ``config/resourceconfig.json``."""
        return self.root / ("input/config" if kind is TRAINING else "config") / "resourceconfig.json"

    @property
    def processing_job_config_file(self) -> Path:
        return self.root / "config" / "processingjobconfig.json"

    def input_data(self, channel: str) -> Path:
        """Where SageMaker puts a training channel's files (``/opt/ml/input/data/<channel>``). No
        ``SM_CHANNEL_*`` lookup: only the training toolkit sets those."""
        return self.root / "input" / "data" / channel

    @property
    def model_dir(self) -> Path:
        return self.at(MODEL)

    @property
    def checkpoint_dir(self) -> Path:
        return self.at(CHECKPOINTS)

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    def failure_file(self, kind: ContainerKind) -> Path | None:
        """Where ``kind``'s container leaves the reason it failed; None for serving (logs only)."""
        return self.root / kind.failure if kind.failure else None

    def processing(self, name: str) -> Path:
        """A processing step's input or output folder (the step declares ``/opt/ml/processing/<name>``)."""
        return self.at(f"{PROCESSING}/{name}")

    def at(self, container_path: str) -> Path:
        """The local folder of a container path under /opt/ml (a step's ``LocalPath``)."""
        prefix = DEFAULT_ROOT + "/"
        if not container_path.startswith(prefix):
            raise OutsideOptMl(container_path)
        return self.root / container_path[len(prefix) :]

    # ---- the files SageMaker writes (the local job runner writes them the same way) ---------------

    def write_hyperparameters(self, values: Mapping[str, str]) -> None:
        """As SageMaker writes them: one JSON object, every value a string."""
        _write_json(self.hyperparameters_file, dict(values))

    def write_input_data_config(self, channels: Mapping[str, Mapping[str, Any]]) -> None:
        """``{"<channel>": {"ContentType", "TrainingInputMode", "S3DistributionType", "RecordWrapperType"}}``."""
        _write_json(self.input_data_config_file, {k: dict(v) for k, v in channels.items()})

    def write_resource_config(self, kind: ContainerKind, cluster: Cluster) -> None:
        """The hosts of the job. Training adds the instance type and the network interface."""
        config: dict[str, Any] = {"current_host": cluster.current_host, "hosts": list(cluster.hosts)}
        if kind is TRAINING:
            config["current_instance_type"] = cluster.instance_type
            config["network_interface_name"] = "eth0"
        _write_json(self.resource_config_file(kind), config)

    def write_processing_job_config(self, request: Mapping[str, Any]) -> None:
        """The CreateProcessingJob request as the container sees it (names, inputs, outputs, resources)."""
        _write_json(self.processing_job_config_file, dict(request))

    # ---- reading them -------------------------------------------------------------------------------

    def read_hyperparameters(self) -> dict[str, Any]:
        path = self.hyperparameters_file
        if not path.exists():
            # A job with no hyperparameters is legal in SageMaker: every default applies.
            return {}
        data = _read_json(path, "a JSON object of strings")
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of hyperparameters, got {type(data).__name__}")
        return data

    def read_cluster(self, kind: ContainerKind) -> Cluster:
        """The job's hosts from ``resourceconfig.json``, which SageMaker writes for every job.

        A missing file means the image was started by hand (``docker run``), on one host."""
        path = self.resource_config_file(kind)
        if not path.exists():
            return Cluster.single()
        data = _read_json(path, "current_host and hosts")
        try:
            hosts = tuple(str(h) for h in data["hosts"])
            current = str(data["current_host"])
        except (KeyError, TypeError):
            raise UserError(
                f"{path}: expected current_host and hosts (SageMaker writes both); got {sorted(data)}"
            ) from None
        if current not in hosts:
            raise UserError(f"{path}: current_host {current!r} is not one of hosts {list(hosts)}")
        return Cluster(
            hosts=hosts, current_host=current, instance_type=str(data.get("current_instance_type", ""))
        )

    def write_failure(self, kind: ContainerKind, reason: str) -> None:
        """SageMaker shows this file's text as the job's FailureReason (training) or ExitMessage
        (processing), keeping the first 1 KiB; serving has no such file.

        Never raises: this runs while the job is already failing. On a full disk the reserve
        (``reserve_failure_space``) is released first, so the few bytes fit; if the file still cannot
        be written, the reason goes to stderr, which the job's log keeps."""
        path = self.failure_file(kind)
        if path is None:
            return
        self.release_failure_space(kind)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, reason.strip() + "\n")
        except OSError as exc:
            print(f"could not write the failure reason to {path} ({exc}); it was: {reason}", file=sys.stderr)

    def reserve_failure_space(self, kind: ContainerKind) -> None:
        """Set aside a little disk beside the failure file, for the reason to fit when a job fails
        because the disk is full (otherwise it leaves a 0-byte failure file)."""
        path = self.failure_file(kind)
        if path is None:
            return
        reserve = path.with_name(FAILURE_RESERVE)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(reserve, "wb") as handle:
                handle.write(bytes(FAILURE_RESERVE_BYTES))
        except OSError:
            reserve.unlink(missing_ok=True)  # already full: nothing to set aside

    def release_failure_space(self, kind: ContainerKind) -> None:
        path = self.failure_file(kind)
        if path is not None:
            path.with_name(FAILURE_RESERVE).unlink(missing_ok=True)


# Beside the failure file, outside /opt/ml/output/data (which SageMaker uploads as output.tar.gz).
FAILURE_RESERVE = ".failure-reserve"
FAILURE_RESERVE_BYTES = 1 << 20


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _read_json(path: Path, expected: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); SageMaker writes {expected} there") from None
