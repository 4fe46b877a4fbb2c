"""``mlops config show|validate``."""

from __future__ import annotations

import json

import typer

from pipelines.cli.options import ConfigFiles, SetItems, load

app = typer.Typer(help="Inspect and validate the project configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigFiles = [], set_: SetItems = []) -> None:
    """Print the merged, validated configuration as JSON."""
    typer.echo(json.dumps(load(config, set_).model_dump(mode="json"), indent=2))


@app.command("validate")
def validate(config: ConfigFiles = [], set_: SetItems = []) -> None:
    """Check the configuration and that it fits the hardware (`mlops plan`); exit 2 listing every problem."""
    from config.plan import enforce_plan

    plan = enforce_plan(load(config, set_))
    typer.echo("configuration is valid" + ("" if plan.fits else " (but does not fit: plan.enforce=false)"))
