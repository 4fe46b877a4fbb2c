"""The SageMaker container contract: the one map of ``/opt/ml`` and of how a container is started.

The entrypoint reads its inputs through it, the pipeline definition names its paths through it, and
the local job runner lays out a job's folder through it, so the three cannot drift apart.

SageMaker's side of the contract, page by page (docs.aws.amazon.com/sagemaker/latest/dg/...):
``your-algorithms-training-algo-dockerfile.html`` (a training image is started as ``<image> train``),
``your-algorithms-training-algo-running-container.html`` (hyperparameters in
``/opt/ml/input/config/hyperparameters.json``, every value a string; channels in
``/opt/ml/input/data/<channel>``; the only variables SageMaker itself sets are TRAINING_JOB_NAME,
TRAINING_JOB_ARN and the request's Environment), ``your-algorithms-training-algo-output.html`` (the
model written to ``/opt/ml/model`` and packed as model.tar.gz; the failure reason in
``/opt/ml/output/failure``). Processing jobs use the ``LocalPath`` folders their request declares,
under ``/opt/ml/processing`` here (``build-your-own-processing-container.html``).

Locally the same code runs against a run folder by setting ``MLOPS_OPT_ML``. Not yet as strict as
SageMaker: the local job runner still passes the developer's environment through, and ``channel``
honours ``SM_CHANNEL_*``, which only the SageMaker training toolkit sets (the cloud-fidelity issue).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import UserError

DEFAULT_ROOT = "/opt/ml"
ROOT_ENV = "MLOPS_OPT_ML"  # ours, not SageMaker's: where /opt/ml is when a job runs on this machine
# The images' ENTRYPOINT and every step's command; SageMaker appends `train` or `serve` to it.
ENTRYPOINT = ["python", "-m", "containers.entrypoint"]
PROCESSING = f"{DEFAULT_ROOT}/processing"
CHECKPOINTS = f"{DEFAULT_ROOT}/checkpoints"
MODEL = f"{DEFAULT_ROOT}/model"


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

    def input_data(self, channel: str) -> Path:
        """Where SageMaker puts a training channel (no ``SM_CHANNEL_*`` lookup: see ``channel``)."""
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

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    def processing(self, name: str) -> Path:
        """A processing step's input or output folder (the step declares ``/opt/ml/processing/<name>``)."""
        return self.at(f"{PROCESSING}/{name}")

    def channel(self, name: str, env: Mapping[str, str] | None = None) -> Path:
        """A channel's folder. ``SM_CHANNEL_<NAME>`` wins, as in SageMaker's own toolkit."""
        source = os.environ if env is None else env
        override = source.get(f"SM_CHANNEL_{name.upper()}")
        return Path(override) if override else self.input_data(name)

    def at(self, container_path: str) -> Path:
        """The local folder of a container path under /opt/ml (a step's ``LocalPath``)."""
        prefix = DEFAULT_ROOT + "/"
        if not container_path.startswith(prefix):
            raise OutsideOptMl(container_path)
        return self.root / container_path[len(prefix) :]

    def write_hyperparameters(self, values: Mapping[str, str]) -> None:
        """As SageMaker writes them: one JSON object, every value a string."""
        self.hyperparameters_file.parent.mkdir(parents=True, exist_ok=True)
        self.hyperparameters_file.write_text(json.dumps(dict(values), indent=2) + "\n")

    def read_hyperparameters(self) -> dict[str, Any]:
        path = self.hyperparameters_file
        if not path.exists():
            # A job with no hyperparameters is legal in SageMaker: every default applies.
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(
                f"{path}: not valid JSON ({exc}); SageMaker writes a JSON object of strings"
            ) from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of hyperparameters, got {type(data).__name__}")
        return data

    def write_failure(self, reason: str) -> None:
        """SageMaker shows this file's text as the job's FailureReason (it keeps the first 1 KiB)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.failure_file.write_text(reason.strip() + "\n", encoding="utf-8")
