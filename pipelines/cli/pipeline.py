"""``mlops pipeline definition|parameters`` (offline, from the config) and ``start|status|watch`` (the
deployed pipeline; ``status`` and ``watch`` have ``--local`` twins)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pipelines.cli.options import (
    ConfigFiles,
    Local,
    Params,
    SetItems,
    load,
    out,
    parse_params,
    platform,
    say,
    warn,
)
from pipelines.operate.platform import ExecutionStatus

app = typer.Typer(
    help="The SageMaker Pipeline generated from the config, and its executions.", no_args_is_help=True
)
Execution = Annotated[str | None, typer.Argument(help="Execution ARN or id (default: the newest).")]


@app.command("definition")
def definition(
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON to this file instead of stdout.")
    ] = None,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Print the pipeline definition JSON; deploy-time values are ${Name} placeholders.

    Offline and deterministic: no credentials, no AWS calls, identical bytes for an identical config.

    Example: mlops pipeline definition --out pipeline.json
    """
    cfg = load(config, set_)
    from pipelines.definition.builder import pipeline_definition

    text = pipeline_definition(cfg)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    warn(f"wrote {output} ({len(text)} bytes, pipeline {cfg.pipeline_name})")


@app.command("parameters")
def parameters(config: ConfigFiles = [], set_: SetItems = []) -> None:
    """List the pipeline's parameters with type, default and what each one does."""
    from pipelines.definition.parameters import parameter_specs

    table = Table("name", "type", "default", "description")
    table.columns[2].overflow = "fold"
    for spec in parameter_specs(load(config, set_)):
        allowed = f" One of: {', '.join(spec.enum)}." if spec.enum else ""
        table.add_row(spec.name, spec.kind, str(spec.default), spec.description + allowed)
    out.print(table)


@app.command("start")
def start(
    param: Params = [],
    wait: Annotated[bool, typer.Option("--wait", help="Watch the execution until it ends.")] = False,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Start an execution of the deployed pipeline; parameters are checked before any AWS call.

    Example: mlops pipeline start --param MaxSteps=200 --param QualityThreshold=0.8 --wait
    """
    from pipelines.operate.cloud import CloudPlatform

    arn = CloudPlatform(load(config, set_)).start_execution(parse_params(param))
    say(f"started {arn}")
    if wait:
        watch(arn, 30, False, config, set_)


def _steps_table(status: ExecutionStatus) -> Table:
    table = Table("step", "status", "time", "detail", "logs", title=f"{status.execution}: {status.status}")
    for step in status.steps:
        seconds = f"{step.seconds:.0f}s" if step.seconds is not None else ""
        table.add_row(
            Text(step.name), Text(step.status), seconds, Text(step.detail[-120:]), Text(step.logs or "")
        )
    return table


@app.command("status")
def status(
    execution: Execution = None, local: Local = False, config: ConfigFiles = [], set_: SetItems = []
) -> None:
    """Steps of an execution with status, durations, failure reasons and a link to each step's logs.

    Examples: mlops pipeline status;  mlops pipeline status --local
    """
    shown = platform(load(config, set_), local).execution_status(execution)
    out.print(_steps_table(shown))
    if shown.status in ("Failed", "Stopped"):
        raise typer.Exit(1)


@app.command("watch")
def watch(
    execution: Execution = None,
    interval: Annotated[int, typer.Option("--interval", min=5, help="Seconds between refreshes.")] = 30,
    local: Local = False,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Refresh the step table until the execution ends; exit 1 when it failed or was stopped."""
    from rich.live import Live

    twin = platform(load(config, set_), local)
    shown = twin.execution_status(execution)
    with Live(_steps_table(shown), console=out, auto_refresh=False) as live:
        while twin.refreshes and not shown.finished:
            time.sleep(interval)
            shown = twin.execution_status(execution)
            live.update(_steps_table(shown), refresh=True)
    if shown.status != "Succeeded":
        if shown.failure:
            warn(f"execution {shown.status.lower()}: {shown.failure}")
        raise typer.Exit(1)
