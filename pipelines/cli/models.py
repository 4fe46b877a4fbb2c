"""``mlops models list|show|approve|reject``: the Model Registry group, or with ``--local`` the local
MLflow registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pipelines.cli.options import ConfigFiles, Local, SetItems, load, out, platform, say
from pipelines.operate.platform import Decision

app = typer.Typer(
    help="The Model Registry group (`--local`: the local MLflow registry).", no_args_is_help=True
)
Version = Annotated[int, typer.Argument(help="Version number (see `mlops models list`).")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why, recorded with the decision.")]


@app.command("list")
def list_(local: Local = False, config: ConfigFiles = [], set_: SetItems = []) -> None:
    """Versions in the model package group, newest first, with their approval status."""
    cfg = load(config, set_)
    table = Table("version", "status", "created", "arn", title=cfg.model_package_group)
    for row in platform(cfg, local).models():
        table.add_row(str(row.version), row.status, row.created, Text(row.arn))
    out.print(table)


@app.command("show")
def show(version: Version, local: Local = False, config: ConfigFiles = [], set_: SetItems = []) -> None:
    """Metrics, metadata (commit, data hash, MLflow run, versions) and compile/serving settings of a version."""
    cfg = load(config, set_)
    shown = platform(cfg, local).model(version)
    say(f"{cfg.model_package_group} v{shown.version}: {shown.status}  {shown.arn}")
    for title, values in (
        ("metrics", shown.metrics),
        ("metadata", shown.metadata),
        ("serving", shown.serving),
    ):
        table = Table("name", "value", title=title)
        for key, value in sorted(values.items()):
            table.add_row(Text(key), Text(f"{value:.4g}" if isinstance(value, float) else str(value)))
        out.print(table)
    say(
        f"artifact: {shown.artifact}\nimage: {shown.image}\ninstance types: {', '.join(shown.instance_types)}"
    )


def _decision(status: Decision, doc: str) -> Callable[..., None]:
    """The ``approve`` or ``reject`` command: the same arguments, one approval status."""

    def decide(
        version: Version,
        reason: Reason = None,
        local: Local = False,
        config: ConfigFiles = [],
        set_: SetItems = [],
    ) -> None:
        decided = platform(load(config, set_), local).set_approval(version, status, reason)
        say(f"{decided.arn}: {decided.status}")
        if decided.next_step:
            say(decided.next_step)

    decide.__doc__ = doc
    return decide


app.command("approve")(
    _decision("Approved", "Approve a version; in the cloud this deploys it to the endpoint (blue/green).")
)
app.command("reject")(_decision("Rejected", "Reject a version."))
