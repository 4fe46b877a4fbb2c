"""The SageMaker container filesystem contract, rooted at ``/opt/ml`` or at ``$MLOPS_OPT_ML``.

Locally the same code runs against a temp or run folder by setting ``MLOPS_OPT_ML``; nothing else
changes between a laptop and a SageMaker job.
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


@dataclass(frozen=True)
class OptMl:
    root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OptMl:
        source = os.environ if env is None else env
        return cls(Path(source.get("MLOPS_OPT_ML", DEFAULT_ROOT)))

    @property
    def hyperparameters_file(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    def processing(self, name: str) -> Path:
        """A processing step's input or output folder (the step declares ``/opt/ml/processing/<name>``)."""
        return self.root / "processing" / name

    def channel(self, name: str, env: Mapping[str, str] | None = None) -> Path:
        """A channel's folder. ``SM_CHANNEL_<NAME>`` wins, as in SageMaker's own toolkit."""
        source = os.environ if env is None else env
        override = source.get(f"SM_CHANNEL_{name.upper()}")
        return Path(override) if override else self.root / "input" / "data" / name

    def read_hyperparameters(self) -> dict[str, Any]:
        path = self.hyperparameters_file
        if not path.exists():
            # A job with no hyperparameters is legal in SageMaker: every default applies.
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); SageMaker writes a JSON object of strings") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of hyperparameters, got {type(data).__name__}")
        return data

    def write_failure(self, reason: str) -> None:
        """SageMaker shows this file's text as the job's FailureReason (it keeps the first 1 KiB)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.failure_file.write_text(reason.strip() + "\n", encoding="utf-8")
