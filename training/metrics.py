"""Training metrics as stable ``key=value`` log lines, and to MLflow when ``MLFLOW_TRACKING_URI`` is set.

SageMaker metric definitions are regexes over the job's logs, so the line format is a contract:
``metrics step=<int> train_loss=<float> learning_rate=<float> tokens_per_second=<float> ...``.
Keys never change meaning; new keys may be added.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from training.errors import UserError

log = logging.getLogger("metrics")

# Regexes for SageMaker metric definitions; pipelines/ reuses them so logs and definitions agree.
METRIC_REGEXES = {
    "train_loss": r"\btrain_loss=([0-9.eE+-]+)",
    "eval_loss": r"\beval_loss=([0-9.eE+-]+)",
    "learning_rate": r"\blearning_rate=([0-9.eE+-]+)",
    "tokens_per_second": r"\btokens_per_second=([0-9.eE+-]+)",
    "padding_fraction": r"\bpadding_fraction=([0-9.eE+-]+)",
}


def progress_wanted(stream: Any = None, env: dict[str, str] | None = None) -> bool:
    """A progress bar on a terminal, plain lines otherwise. ``MLOPS_PROGRESS=1`` forces the bar: the local
    runner sets it when *its* terminal is interactive, because it reads the job's output through a pipe."""
    env = dict(os.environ) if env is None else env
    if env.get("MLOPS_PROGRESS") in ("0", "1"):
        return env["MLOPS_PROGRESS"] == "1"
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def format_metrics(metrics: dict[str, float | int]) -> str:
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key}={value}" if isinstance(value, int) else f"{key}={value:.6g}")
    return "metrics " + " ".join(parts)


class MetricsSink:
    """Log lines always; MLflow too when configured. Only rank 0 should own one."""

    def __init__(self, run_name: str, params: dict[str, Any], env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        self._mlflow: Any = None
        self.run_id: str | None = None
        uri = env.get("MLFLOW_TRACKING_URI")
        if not uri:
            return
        try:
            import mlflow
        except ImportError:
            raise UserError(
                "MLFLOW_TRACKING_URI is set but the mlflow package is not installed in this image; "
                "install mlflow or unset MLFLOW_TRACKING_URI"
            ) from None
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(env.get("MLFLOW_EXPERIMENT_NAME", "llm-finetune"))
        run = mlflow.start_run(run_name=run_name)
        self.run_id = run.info.run_id
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        self._mlflow = mlflow
        log.info("tracking to MLflow at %s (run %s)", uri, self.run_id)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        log.info(format_metrics({"step": step, **metrics}))
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def finish(self, summary: dict[str, float], status: str = "FINISHED") -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics({f"final_{k}": float(v) for k, v in summary.items()})
            self._mlflow.end_run(status=status)
