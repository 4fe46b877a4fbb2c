"""``mlops``: the operator CLI: ``config``, ``train --local`` and ``pipeline definition|parameters``."""

from __future__ import annotations

import json
from pathlib import Path

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
err = Console(stderr=True)

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


@app.callback()
def _root() -> None:
    """Keep subcommands explicit even while there are few."""
