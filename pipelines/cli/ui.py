"""``mlops ui --local``: the MLflow UI over the local store (runs, metrics, the model registry)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.options import ConfigFiles, SetItems, load, say
from training.errors import UserError


def ui(
    local: Annotated[
        bool, typer.Option("--local", help="The local MLflow store that `mlops run --local` fills.")
    ] = False,
    port: Annotated[
        int | None, typer.Option("--port", help="Loopback port of the UI (default: a free one).")
    ] = None,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Start the MLflow UI on the local store, on loopback only, and print its URL; Ctrl-C stops it.

    Example: mlops ui --local
    """
    if not local:
        raise UserError(
            "only `mlops ui --local` exists; the managed MLflow server opens from SageMaker Studio "
            "(MLflow > the tracking server of this project)"
        )
    cfg = load(config, set_)
    if cfg.local.mlflow != "sqlite":
        raise UserError(
            f"local.mlflow={cfg.local.mlflow!r}: local runs track nothing; set local.mlflow=sqlite "
            "and run `mlops run --local` first"
        )
    from pipelines.local.endpoint import free_port
    from pipelines.local.registry import tracking_uri

    store = Path(cfg.local.store_dir).resolve()
    if not (store / "mlflow.db").is_file():
        raise UserError(f"no local MLflow store at {store / 'mlflow.db'}: run `mlops run --local` first")
    port = port or free_port()
    # 127.0.0.1 only: the store holds the training data's statistics and the models; nothing on the
    # network should reach it.
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(store),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    say(f"MLflow UI on the local store: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    try:
        code = subprocess.call(argv)
    except KeyboardInterrupt:
        code = 0
    if code not in (0, -2, 130):
        raise typer.Exit(code)
