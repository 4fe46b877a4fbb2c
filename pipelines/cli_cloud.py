"""The operator commands for the deployed platform, each with a ``--local`` twin where one makes sense:
``pipeline start|status|watch``, ``models list|show|approve|reject``, ``endpoint status|invoke|rollback``.

AWS errors become one line that says what to do (``pipelines/aws_errors.py``); ``mlops --debug ...``
shows the raw error. An empty account is stated plainly (exit 1), never a traceback.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from config.schema import ProjectConfig
from pipelines.aws_errors import NothingThere, translate
from pipelines.cli import STATE, ConfigFiles, SetItems, _load, _parse_params, endpoint_app, err, pipeline_app
from training.errors import UserError

out = Console(soft_wrap=True)
models_app = typer.Typer(help="The Model Registry group (`--local`: the local MLflow registry).", no_args_is_help=True)
Local = typer.Option(False, "--local", help="The local twin: what `mlops run --local` produced.")


def _register(app: typer.Typer) -> None:
    from pipelines.cli import app as root

    root.add_typer(app, name="models")


_register(models_app)


@contextlib.contextmanager
def guarded(cfg: ProjectConfig) -> Iterator[None]:
    try:
        yield
    except NothingThere as exc:
        out.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except typer.Exit:
        raise
    except Exception as exc:
        message = translate(exc, cfg.project.region)
        if message is None:
            raise
        err.print(f"error: {message}", markup=False, highlight=False)
        if STATE["debug"]:
            err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
        else:
            err.print("(run with `mlops --debug ...` for the raw error)", markup=False)
        raise typer.Exit(1) from None


def _clients(cfg: ProjectConfig) -> dict[str, Any]:
    from pipelines.cloud import clients

    return clients(cfg)


def _store(cfg: ProjectConfig) -> Path:
    return Path(cfg.local.store_dir).resolve()


# ---- pipeline -----------------------------------------------------------------------------------------


def _steps_table(status: dict[str, Any]) -> Table:
    table = Table("step", "status", "time", "detail", "logs", title=f"{status['execution']}: {status['status']}")
    for step in status["steps"]:
        seconds = f"{step['seconds']:.0f}s" if step["seconds"] is not None else ""
        table.add_row(Text(step["name"]), Text(step["status"]), seconds, Text(step["detail"][-120:]),
                      Text(step["logs"] or ""))
    return table


@pipeline_app.command("start")
def pipeline_start(
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter Name=value (repeatable)."),
    wait: bool = typer.Option(False, "--wait", help="Watch the execution until it ends."),
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Start an execution of the deployed pipeline; parameters are checked before any AWS call.

    Example: mlops pipeline start --param MaxSteps=200 --param QualityThreshold=0.8 --wait
    """
    cfg = _load(config, set_)
    overrides = _parse_params(param)
    with guarded(cfg):
        from pipelines.cloud import start_execution, validate_parameters

        validate_parameters(cfg, overrides)  # before the clients are even made
        arn = start_execution(_clients(cfg)["sagemaker"], cfg, overrides)
        out.print(f"started {arn}", markup=False)
    if wait:
        pipeline_watch(arn, 30, False, config, set_)


@pipeline_app.command("status")
def pipeline_status(
    execution: str = typer.Argument(None, help="Execution ARN or id (default: the newest)."),
    local: bool = Local,
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Steps of an execution with status, durations, failure reasons and a link to each step's logs.

    Examples: mlops pipeline status;  mlops pipeline status --local
    """
    cfg = _load(config, set_)
    with guarded(cfg):
        status = _local_status(cfg, execution) if local else _cloud_status(cfg, execution)
        out.print(_steps_table(status))
        if status["status"] in ("Failed", "Stopped"):
            raise typer.Exit(1)


def _cloud_status(cfg: ProjectConfig, execution: str | None) -> dict[str, Any]:
    from pipelines.cloud import execution_status, resolve_execution

    sm = _clients(cfg)["sagemaker"]
    return execution_status(sm, cfg, resolve_execution(sm, cfg, execution))


def _local_status(cfg: ProjectConfig, execution: str | None) -> dict[str, Any]:
    import json

    runs = _store(cfg) / "runs"
    reports = sorted(runs.glob("*/report.json"), key=lambda p: p.stat().st_mtime) if runs.exists() else []
    if execution:
        reports = [p for p in reports if p.parent.name == execution]
    if not reports:
        raise NothingThere("no local pipeline run" + (f" {execution}" if execution else "") + ": `mlops run --local`")
    report = json.loads(reports[-1].read_text())
    return {"execution": report["execution_id"], "status": report["status"], "failure": "",
            "steps": [{"name": s["name"], "status": s["status"], "seconds": s["seconds"], "detail": s["message"],
                       "logs": s["log"]} for s in report["steps"]]}


@pipeline_app.command("watch")
def pipeline_watch(
    execution: str = typer.Argument(None, help="Execution ARN or id (default: the newest)."),
    interval: int = typer.Option(30, "--interval", min=5, help="Seconds between refreshes."),
    local: bool = Local,
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Refresh the step table until the execution ends; exit 1 when it failed or was stopped."""
    cfg = _load(config, set_)
    from rich.live import Live

    with guarded(cfg):
        fetch = (lambda: _local_status(cfg, execution)) if local else (lambda: _cloud_status(cfg, execution))
        status = fetch()
        with Live(_steps_table(status), console=out, auto_refresh=False) as live:
            while status["status"] not in ("Succeeded", "Failed", "Stopped", "Stopping") and not local:
                time.sleep(interval)
                status = fetch()
                live.update(_steps_table(status), refresh=True)
        if status["status"] != "Succeeded":
            if status.get("failure"):
                err.print(f"execution {status['status'].lower()}: {status['failure']}", markup=False)
            raise typer.Exit(1)


# ---- models -------------------------------------------------------------------------------------------


@models_app.command("list")
def models_list(local: bool = Local, config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Versions in the model package group, newest first, with their approval status."""
    cfg = _load(config, set_)
    with guarded(cfg):
        if local:
            from pipelines.local_registry import local_model_rows

            rows = local_model_rows(_store(cfg), cfg.model_package_group)
        else:
            from pipelines.cloud import list_models

            rows = list_models(_clients(cfg)["sagemaker"], cfg)
        table = Table("version", "status", "created", "arn", title=cfg.model_package_group)
        for row in rows:
            table.add_row(str(row["version"]), row["status"], row["created"], Text(row["arn"]))
        out.print(table)


@models_app.command("show")
def models_show(version: int = typer.Argument(..., help="Version number (see `mlops models list`)."),
                local: bool = Local, config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Metrics, metadata (commit, data hash, MLflow run, versions) and compile/serving settings of a version."""
    cfg = _load(config, set_)
    with guarded(cfg):
        if local:
            from pipelines.local_registry import show_local_model

            shown = show_local_model(_store(cfg), cfg.model_package_group, version)
        else:
            from pipelines.cloud import show_model

            c = _clients(cfg)
            shown = show_model(c["sagemaker"], c["s3"], cfg, version)
        out.print(f"{cfg.model_package_group} v{shown['version']}: {shown['status']}  {shown['arn']}", markup=False)
        for title in ("metrics", "metadata", "serving"):
            table = Table("name", "value", title=title)
            for key, value in sorted(shown[title].items()):
                table.add_row(Text(key), Text(f"{value:.4g}" if isinstance(value, float) else str(value)))
            out.print(table)
        out.print(f"artifact: {shown['artifact']}\nimage: {shown['image']}\ninstance types: "
                  f"{', '.join(shown['instance_types'])}", markup=False)


def _approval(version: int, status: str, reason: str | None, local: bool, config: list[Path], set_: list[str]) -> None:
    cfg = _load(config, set_)
    with guarded(cfg):
        if local:
            from pipelines.local_registry import set_local_approval

            arn = set_local_approval(_store(cfg), cfg.model_package_group, version, status, reason)
        else:
            from pipelines.cloud import set_approval

            arn = set_approval(_clients(cfg)["sagemaker"], cfg, version, status, reason)
        out.print(f"{arn}: {status}", markup=False)
        if status == "Approved" and not local:
            out.print(f"the deployer now rolls it out to {cfg.endpoint_name}: `mlops endpoint status`", markup=False)


Reason = typer.Option(None, "--reason", help="Why, recorded with the decision.")


@models_app.command("approve")
def models_approve(version: int = typer.Argument(..., help="Version number."), reason: str = Reason,
                   local: bool = Local, config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Approve a version; in the cloud this deploys it to the endpoint (blue/green)."""
    _approval(version, "Approved", reason, local, config, set_)


@models_app.command("reject")
def models_reject(version: int = typer.Argument(..., help="Version number."), reason: str = Reason,
                  local: bool = Local, config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Reject a version."""
    _approval(version, "Rejected", reason, local, config, set_)


# ---- endpoint -----------------------------------------------------------------------------------------


def _local_endpoint(cfg: ProjectConfig) -> dict[str, Any]:
    from pipelines.local_endpoint import read_state

    state = read_state(_store(cfg))
    if state is None:
        raise NothingThere("no local endpoint is running (start one with `mlops run --local`)")
    return state


@endpoint_app.command("status")
def endpoint_status(local: bool = Local, config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """The endpoint's status, the model version it serves and its instances."""
    cfg = _load(config, set_)
    with guarded(cfg):
        if local:
            state = _local_endpoint(cfg)
            out.print(f"{state['url']}  model {state['model']} v{state['version']}  pid {state['pid']}  "
                      f"log {state['log']}", markup=False)
            return
        from pipelines.cloud import endpoint_status as status_of

        status = status_of(_clients(cfg)["sagemaker"], cfg)
        instances = ", ".join(f"{v['variant']}: {v['instances']}/{v['desired']}" for v in status["variants"])
        out.print(f"{status['endpoint']}  {status['status']}  serving v{status['version']} ({status['config']})  "
                  f"instances {instances}" + (f"  failure: {status['failure']}" if status["failure"] else ""),
                  markup=False)


@endpoint_app.command("invoke")
def endpoint_invoke(
    prompt: str = typer.Option(..., "--prompt", help="The user message."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="Completion budget."),
    local: bool = Local, config: list[Path] = ConfigFiles, set_: list[str] = SetItems,
) -> None:
    """Send one OpenAI-style chat request and print the reply.

    Example: mlops endpoint invoke --prompt "Convert this date to ISO 8601: the 30th of June, 1956"
    """
    cfg = _load(config, set_)
    with guarded(cfg):
        if local:
            from pipelines.local_endpoint import invoke as local_invoke

            state = _local_endpoint(cfg)
            reply = local_invoke(state["url"], [{"role": "user", "content": prompt}], max_tokens)
            out.print(reply["choices"][0]["message"]["content"], markup=False, highlight=False)
            return
        from pipelines.cloud import invoke

        out.print(invoke(_clients(cfg)["sagemaker-runtime"], cfg.endpoint_name, prompt, max_tokens),
                  markup=False, highlight=False)


@endpoint_app.command("rollback")
def endpoint_rollback(config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Redeploy the newest approved version older than the one being served (same blue/green policy)."""
    cfg = _load(config, set_)
    with guarded(cfg):
        from pipelines.cloud import rollback

        done = rollback(_clients(cfg)["sagemaker"], cfg)
        out.print(f"{done['endpoint']}: rolling back v{done['from']} -> v{done['to']} ({done['config']}); "
                  "watch with `mlops endpoint status`", markup=False)
