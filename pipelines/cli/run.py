"""Two of the root's own commands: ``mlops run --local`` (the whole pipeline on this machine) and
``mlops train --local`` (the FineTune step alone); ``ui`` is the third, in ``ui.py``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipelines.cli.options import ConfigFiles, Params, SetItems, load, parse_params, say, warn
from training.errors import UserError

if TYPE_CHECKING:
    from pipelines.local.executor import ExecutionFailed
    from pipelines.local.run import LocalResult


def train(
    local: Annotated[bool, typer.Option("--local", help="Run the train entrypoint on this machine.")] = False,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Run folder name; reuse one to resume from its checkpoints."),
    ] = None,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Fine-tune the configured base model with LoRA.

    Example: mlops train --local --set training.max_steps=20
    """
    if not local:
        raise UserError(
            "only `mlops train --local` exists; cloud training runs through the SageMaker pipeline "
            "(`mlops pipeline start`)"
        )
    cfg = load(config, set_)
    from pipelines.local.train import run_training

    run = run_training(cfg, run_id)
    if run.returncode != 0:
        warn(f"training failed (exit {run.returncode}):\n{run.reason}")
        warn(f"log and partial outputs kept in {run.root}")
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


def run(
    local: Annotated[
        bool, typer.Option("--local", help="Run the pipeline definition on this machine.")
    ] = False,
    param: Params = [],
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Continue this execution id from its first unfinished step."),
    ] = None,
    docker: Annotated[
        bool, typer.Option("--docker", help="Run each step inside its image (needs a Docker engine).")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the registered model when the gate passes.")
    ] = True,
    port: Annotated[
        int | None, typer.Option("--port", help="Loopback port of the local endpoint (default: a free one).")
    ] = None,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Run the whole pipeline: prepare, fine-tune, evaluate, gate, compile, register, serve.

    Locally the very same definition as `mlops pipeline definition` runs, with TrainBackend=auto and
    CompileTarget=cpu; a second run with nothing changed comes from the step cache.

    Examples: mlops run --local;  mlops run --local --param MaxSteps=20;  mlops run --local --resume ID
    """
    if not local:
        raise UserError(
            "only `mlops run --local` exists; in the cloud, start the deployed pipeline with "
            "`mlops pipeline start` or from SageMaker Studio"
        )
    cfg = load(config, set_)
    overrides = parse_params(param)
    from pipelines.local.executor import ExecutionFailed
    from pipelines.local.run import run_local
    from pipelines.local.view import StepView

    console = Console(soft_wrap=True)  # URIs and the curl line must stay copyable
    try:
        with StepView(console) as view:
            result = run_local(
                cfg,
                overrides,
                resume=resume,
                docker=docker,
                serve=serve,
                port=port,
                view=view,
                invocation={"config": [str(c) for c in config], "set": list(set_)},
            )
    except ExecutionFailed as exc:
        _explain_failure(exc)
        raise typer.Exit(1) from None
    _print_summary(result)


def _explain_failure(exc: ExecutionFailed) -> None:
    """What failed, where its log is, and what to do next: rerun or resume."""
    warn(f"\nthe run failed at step {exc.step}:\n{exc.message}")
    if exc.log:
        warn(f"log: {exc.log}")
    warn(f"report: {exc.report}")
    if exc.by_fail_step:
        warn(
            "the pipeline stopped itself here; change the inputs or parameters (e.g. --param "
            "QualityThreshold=..., more training steps) and run again: finished steps come from the cache"
        )
    else:
        warn(
            f"after a transient cause (the machine, an interruption), continue it: mlops run --local --resume "
            f"{exc.report.parent.name}\nafter fixing the data, the config or the code, run again without "
            "--resume: steps whose inputs did not change come from the cache"
        )


def _print_summary(result: LocalResult) -> None:
    report = result.report
    steps = report["steps"]
    cached = sum(1 for s in steps if s["status"] == "cached")
    total = sum(s["seconds"] or 0 for s in steps)
    say(
        f"\nexecution {report['execution_id']}: {report['status']} ({len(steps)} steps, {cached} from cache, "
        f"{total:.0f} s of step time)"
    )
    metrics = report.get("metrics", {})
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        say("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    for name, gate in report.get("gates", {}).items():
        say(f"{name}: {'passed' if gate['passed'] else 'not passed'} ({gate['detail']})")
    registered = report.get("registered")
    if registered:
        say(
            f"registered: {registered['ModelPackageGroupName']} version {registered['ModelPackageVersion']} "
            f"({registered['ModelApprovalStatus']}) in the local MLflow registry"
        )
    for key, uri in report.get("artifacts", {}).items():
        say(f"  {key}: {uri}")
    say(f"report: {result.report_path}")
    if result.endpoint:
        url = result.endpoint["url"]
        reply = result.smoke["choices"][0]["message"]["content"] if result.smoke else ""
        kept = (
            "; the running server already served this artifact, kept" if result.endpoint.get("reused") else ""
        )
        say(
            f"\nlocal endpoint: {url} (model {result.endpoint['model']} v{result.endpoint['version']}, "
            f"log {result.endpoint['log']}{kept})"
        )
        say(f"smoke test reply: {reply!r}")
        say(
            f"try: curl -s {url}/invocations -H 'Content-Type: application/json' -d "
            '\'{"messages":[{"role":"user","content":"Convert this date to ISO 8601: '
            'the 30th of June, 1956"}],"temperature":0}\''
        )
        say("stop it: mlops endpoint stop --local")
