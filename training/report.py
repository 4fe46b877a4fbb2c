"""``training_report.json``: what a run did, written next to the model it produced."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from training.job import TrainJob

_VERSIONED = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "optimum-neuron",
    "torch-neuronx",
    "neuronx-cc",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_report(
    *,
    job: TrainJob,
    backend: str,
    steps_completed: int,
    resumed_from: dict[str, Any] | None,
    final: dict[str, float],
    real_tokens: int,
    train_seconds: float,
    setup_seconds: float,
    input_shapes: list[tuple[int, ...]],
    data: dict[str, Any],
    extra: dict[str, Any],
    mlflow_run_id: str | None,
) -> dict[str, Any]:
    return {
        "backend": backend,
        "base_model": job.model_source,
        "steps_completed": steps_completed,
        "max_steps": job.hp.max_steps,
        "resumed_from_checkpoint": resumed_from,
        "final_metrics": final,
        "real_tokens_trained": real_tokens,
        "train_seconds": round(train_seconds, 3),
        "setup_seconds": round(setup_seconds, 3),
        # Real (non-padding) tokens per second of optimizer work, across resumes.
        "tokens_per_second": round(real_tokens / train_seconds, 3) if train_seconds else None,
        "distinct_input_shapes": len(input_shapes),
        "input_shapes": [list(s) for s in input_shapes],
        "data": data,
        "hyperparameters": job.hp.model_dump(),
        "versions": library_versions(),
        "mlflow_run_id": mlflow_run_id,
        **extra,
    }


def write_report(model_dir: Path, report: dict[str, Any]) -> Path:
    path = model_dir / "training_report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path
