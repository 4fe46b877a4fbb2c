"""``mlops``: the operator CLI: ``config``, ``train --local``, ``pipeline definition|parameters``,
``run --local`` and ``endpoint status|stop --local``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from config import ConfigError, ProjectConfig, load_config
from training.errors import UserError

app = typer.Typer(help="Fine-tune on Trainium, serve on Inferentia; the same steps run locally.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect and validate the project configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
pipeline_app = typer.Typer(help="The SageMaker Pipeline generated from the config (offline, no AWS calls).",
                           no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
endpoint_app = typer.Typer(help="The model endpoint (`--local`: the one `mlops run --local` started).",
                           no_args_is_help=True)
app.add_typer(endpoint_app, name="endpoint")
err = Console(stderr=True, soft_wrap=True)  # messages hold paths and commands: never wrapped

ConfigFiles = typer.Option([], "--config", "-c", help="Override YAML merged over config/default.yaml (repeatable).")
SetItems = typer.Option([], "--set", "-s", help="dotted.key=value override, e.g. training.max_steps=20 (repeatable).")


def _load(files: list[Path], sets: list[str]) -> ProjectConfig:
    try:
        return load_config(files, sets)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None


@config_app.command("show")
def config_show(config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Print the merged, validated configuration as JSON."""
    typer.echo(json.dumps(_load(config, set_).model_dump(mode="json"), indent=2))


@config_app.command("validate")
def config_validate(config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """Check the configuration; exit 2 listing every problem."""
    _load(config, set_)
    typer.echo("configuration is valid")


@pipeline_app.command("definition")
def pipeline_definition_cmd(
    out: Path = typer.Option(None, "--out", "-o", help="Write the JSON to this file instead of stdout."),
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Print the pipeline definition JSON; deploy-time values are ${Name} placeholders.

    Offline and deterministic: no credentials, no AWS calls, identical bytes for an identical config.

    Example: mlops pipeline definition --out pipeline.json
    """
    cfg = _load(config, set_)
    from pipelines.definition import pipeline_definition

    text = pipeline_definition(cfg)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    err.print(f"wrote {out} ({len(text)} bytes, pipeline {cfg.pipeline_name})", markup=False, highlight=False)


@pipeline_app.command("parameters")
def pipeline_parameters_cmd(config: list[Path] = ConfigFiles, set_: list[str] = SetItems) -> None:
    """List the pipeline's parameters with type, default and what each one does."""
    from rich.table import Table

    from pipelines.definition import parameter_specs

    table = Table("name", "type", "default", "description")
    table.columns[2].overflow = "fold"
    for spec in parameter_specs(_load(config, set_)):
        allowed = f" One of: {', '.join(spec.enum)}." if spec.enum else ""
        table.add_row(spec.name, spec.kind, str(spec.default), spec.description + allowed)
    Console().print(table)


@app.command("train")
def train(
    local: bool = typer.Option(False, "--local", help="Run the train entrypoint on this machine."),
    run_id: str = typer.Option(None, "--run-id", help="Run folder name; reuse one to resume from its checkpoints."),
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Fine-tune the configured base model with LoRA.

    Example: mlops train --local --set training.max_steps=20
    """
    if not local:
        err.print("error: only `mlops train --local` exists so far; cloud training runs through the SageMaker pipeline")
        raise typer.Exit(2)
    cfg = _load(config, set_)
    from pipelines.local_train import run_training

    try:
        run = run_training(cfg, run_id)
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if run.returncode != 0:
        reason = run.failure.read_text().strip() if run.failure.exists() else "(no failure file written)"
        err.print(f"training failed (exit {run.returncode}):\n{reason}", markup=False, highlight=False)
        err.print(f"log and partial outputs kept in {run.root}", markup=False)
        raise typer.Exit(run.returncode)
    report = json.loads(run.report.read_text())
    typer.echo("")
    typer.echo(f"model:  {run.model_dir}")
    typer.echo(f"report: {run.report}")
    typer.echo(f"log:    {run.log}")
    final = ", ".join(f"{k}={v:.4f}" for k, v in report["final_metrics"].items())
    typer.echo(
        f"steps={report['steps_completed']} {final} tokens_per_second={report['tokens_per_second']} "
        f"input_shapes={report['distinct_input_shapes']}"
    )


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err.print(f"error: --param {item!r}: expected Name=value, e.g. --param MaxSteps=20", markup=False)
            raise typer.Exit(2)
        out[name.strip()] = value.strip()
    return out


@app.command("run")
def run(
    local: bool = typer.Option(False, "--local", help="Run the pipeline definition on this machine."),
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter Name=value (repeatable)."),
    resume: str = typer.Option(None, "--resume", help="Continue this execution id from its first unfinished step."),
    docker: bool = typer.Option(False, "--docker", help="Run each step inside its image (needs a Docker engine)."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the registered model when the gate passes."),
    port: int = typer.Option(None, "--port", help="Loopback port of the local endpoint (default: a free one)."),
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Run the whole pipeline: prepare, fine-tune, evaluate, gate, compile, register, serve.

    Locally the very same definition as `mlops pipeline definition` runs, with TrainBackend=auto and
    CompileTarget=cpu; a second run with nothing changed comes from the step cache.

    Examples: mlops run --local;  mlops run --local --param MaxSteps=20;  mlops run --local --resume ID
    """
    if not local:
        err.print("error: only `mlops run --local` exists so far; in the cloud, start the deployed pipeline "
                  "from SageMaker Studio", markup=False)
        raise typer.Exit(2)
    cfg = _load(config, set_)
    overrides = _parse_params(param)
    from pipelines.local_executor import ExecutionFailed, ExecutorError
    from pipelines.local_run import run_local
    from pipelines.local_view import StepView

    out = Console(soft_wrap=True)  # URIs and the curl line must stay copyable
    try:
        with StepView(out) as view:
            result = run_local(cfg, overrides, resume=resume, docker=docker, serve=serve, port=port, view=view)
    except ExecutionFailed as exc:
        err.print(f"\nthe run failed at step {exc.step}:\n{exc.message}", markup=False, highlight=False)
        if exc.log:
            err.print(f"log: {exc.log}", markup=False)
        err.print(f"report: {exc.report}", markup=False)
        if exc.by_fail_step:
            err.print("the pipeline stopped itself here; change the inputs or parameters (e.g. --param "
                      "QualityThreshold=..., more training steps) and run again: finished steps come from the cache",
                      markup=False)
        else:
            err.print(f"after a transient cause (the machine, an interruption), continue it: mlops run --local --resume "
                      f"{exc.report.parent.name}\nafter fixing the data, the config or the code, run again without "
                      "--resume: steps whose inputs did not change come from the cache", markup=False)
        raise typer.Exit(1) from None
    except (UserError, ExecutorError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    _print_summary(out, result)


def _print_summary(out: Console, result: Any) -> None:
    report = result.report
    steps = report["steps"]
    cached = sum(1 for s in steps if s["status"] == "cached")
    total = sum(s["seconds"] or 0 for s in steps)
    out.print(f"\nexecution {report['execution_id']}: {report['status']} ({len(steps)} steps, {cached} from cache, "
              f"{total:.0f} s of step time)", markup=False)
    metrics = report.get("metrics", {})
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        out.print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()), markup=False)
    for name, gate in report.get("gates", {}).items():
        out.print(f"{name}: {'passed' if gate['passed'] else 'not passed'} ({gate['detail']})", markup=False)
    registered = report.get("registered")
    if registered:
        out.print(f"registered: {registered['ModelPackageGroupName']} version {registered['ModelPackageVersion']} "
                  f"({registered['ModelApprovalStatus']}) in the local MLflow registry", markup=False)
    for key, uri in report.get("artifacts", {}).items():
        out.print(f"  {key}: {uri}", markup=False)
    out.print(f"report: {result.report_path}", markup=False)
    if result.endpoint:
        url = result.endpoint["url"]
        reply = result.smoke["choices"][0]["message"]["content"] if result.smoke else ""
        out.print(f"\nlocal endpoint: {url} (model {result.endpoint['model']} v{result.endpoint['version']}, "
                  f"log {result.endpoint['log']})", markup=False)
        out.print(f"smoke test reply: {reply!r}", markup=False)
        out.print(f"try: curl -s {url}/invocations -H 'Content-Type: application/json' -d "
                  "'{\"messages\":[{\"role\":\"user\",\"content\":\"Convert this date to ISO 8601: "
                  "the 30th of June, 1956\"}],\"temperature\":0}'", markup=False, highlight=False)
        out.print("stop it: mlops endpoint stop --local", markup=False)


@endpoint_app.command("stop")
def endpoint_stop(
    local: bool = typer.Option(False, "--local", help="The endpoint `mlops run --local` started."),
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Stop the local endpoint (SIGTERM: in-flight requests finish first)."""
    if not local:
        err.print("error: only `mlops endpoint stop --local` exists so far", markup=False)
        raise typer.Exit(2)
    from pipelines.local_endpoint import stop

    state = stop(Path(_load(config, set_).local.store_dir).resolve())
    typer.echo(f"stopped the local endpoint at {state['url']} (pid {state['pid']})" if state
               else "no local endpoint is running")


STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the raw AWS error and traceback.")) -> None:
    """Keep subcommands explicit; --debug applies to all of them."""
    STATE["debug"] = debug


# The cloud commands (pipeline start|status|watch, models, endpoint status|invoke|rollback) and `cost`
# register themselves on the groups above.
from pipelines import cli_cloud  # noqa: E402,F401
from pipelines import cli_cost  # noqa: E402,F401
