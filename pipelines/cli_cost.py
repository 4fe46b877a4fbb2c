"""``mlops cost``: what a pipeline run and a day of the endpoint cost; ``mlops cost refresh`` fills the
price table (config/prices.yaml) from the AWS Price List."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipelines.cli import ConfigFiles, SetItems, _load, app, err
from pipelines import cli_cloud  # the module, not its names: it may still be loading (cli imports both)
from pipelines.prices import PRICES_FILE
from training.errors import UserError

out = Console(soft_wrap=True)
cost_app = typer.Typer()  # help: the callback's docstring
app.add_typer(cost_app, name="cost")
Prices = typer.Option(PRICES_FILE, "--prices", help="The price table to read (and, for refresh, to write).")


def _usd(value: float) -> str:
    return f"{value:,.2f}"


@cost_app.callback(invoke_without_command=True)
def cost(
    ctx: typer.Context,
    prices: Path = Prices,
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """The ceiling of one pipeline run and the endpoint per day, in USD, for the configured region.

    Instance types, counts and max runtimes come from the config; prices from the table, with the date AWS published them.

    Example: mlops cost --set pipeline.instances.train=ml.trn1.32xlarge --set pipeline.train_max_runtime_seconds=7200
    """
    if ctx.invoked_subcommand is not None:
        if prices != PRICES_FILE or as_json or config or set_:
            # Options before the subcommand would belong to `cost`, and `refresh` would silently ignore them.
            err.print(f"error: put the options after `{ctx.invoked_subcommand}`, e.g. "
                      f"`mlops cost {ctx.invoked_subcommand} --prices FILE`", markup=False, highlight=False)
            raise typer.Exit(2)
        return
    cfg = _load(config, set_)
    from pipelines.cost import estimate
    from pipelines.prices import load_prices

    try:
        result = estimate(cfg, load_prices(prices), prices)
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
        return
    p = result.prices
    out.print(f"Prices for {result.region}: {p.source}, published {p.published}, fetched {p.fetched} ({prices})",
              markup=False, highlight=False)
    run = Table("step", "use", "instance", "count", "max hours", "USD/hour", "USD",
                title=f"One run of {cfg.pipeline_name}, every step to its max runtime", title_justify="left")
    for line in result.run:
        run.add_row(line.item, line.usage, line.instance_type, str(line.count), f"{line.hours:g}",
                    f"{line.usd_per_hour:g}", _usd(line.usd))
    run.add_row("total", "", "", "", "", "", _usd(result.run_usd), style="bold")
    out.print(run)
    endpoint = Table("endpoint", "instance", "count", "USD/hour", "USD/day", "USD/30 days",
                     title="The endpoint, per day", title_justify="left")
    for line in result.endpoint:
        endpoint.add_row(Text(line.item), line.instance_type, str(line.count), f"{line.usd_per_hour:g}",
                         _usd(line.usd), _usd(line.usd * 30))
    out.print(endpoint)
    for note in result.notes:
        out.print(f"- {note}", markup=False, highlight=False)


@cost_app.command("refresh")
def cost_refresh(
    region: list[str] = typer.Option([], "--region", "-r", help="Region to refresh (repeatable; default project.region)."),
    from_file: Path = typer.Option(None, "--from-file", help="Read a downloaded AmazonSageMaker bulk offer file "
                                   "instead of calling the Price List Query API (no credentials needed)."),
    prices: Path = Prices,
    config: list[Path] = ConfigFiles,
    set_: list[str] = SetItems,
) -> None:
    """Rewrite a region's SageMaker prices in the table from the AWS Price List, with its publication date.

    The Query API needs credentials allowed pricing:GetProducts. Without them, download the region's public offer file and pass it with --from-file.

    Examples: mlops cost refresh --region us-east-1 --region us-west-2;
    curl -o sm.json https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/us-east-1/index.json
    && mlops cost refresh --from-file sm.json
    """
    cfg = _load(config, set_)
    from pipelines.prices import (
        PRICING_API_REGION,
        PriceTable,
        check_region,
        load_prices,
        read_offer_file,
        save_prices,
    )

    with cli_cloud.guarded(cfg):
        regions = [check_region(r) for r in region] or [cfg.project.region]
        if from_file is not None and len(regions) > 1:
            raise UserError("--from-file holds one region's prices: give one --region with it")
        table = load_prices(prices) if prices.exists() else PriceTable()
        client = None
        for name in regions:
            if from_file is not None:
                if from_file.exists():  # a region's offer file runs to tens of MB: say what the wait is
                    err.print(f"reading {from_file} ({from_file.stat().st_size / 1e6:.1f} MB)", markup=False)
                fresh, conflicts = read_offer_file(from_file, name)
            else:
                if client is None:
                    import boto3

                    client = boto3.Session().client("pricing", region_name=PRICING_API_REGION)
                fresh, conflicts = _fetch(client, name)
            for conflict in conflicts:
                err.print(f"warning: two prices for {conflict}", markup=False, highlight=False)
            table.regions[name] = fresh
            save_prices(table, prices)  # region by region: a failure later keeps what was fetched
            counts = ", ".join(f"{len(fresh.usage(u))} {u}" for u in ("training", "processing", "hosting"))
            out.print(f"{prices}: {name} now has {counts} prices, published {fresh.published}", markup=False,
                      highlight=False)


def _fetch(client: Any, region: str) -> tuple[Any, list[str]]:
    from botocore.exceptions import ClientError

    from pipelines.prices import fetch_region

    try:
        return fetch_region(client, region, lambda msg: err.print(msg, markup=False, highlight=False))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "AccessDeniedException"):
            raise  # the generic translation in guarded() covers the rest
        raise UserError("access denied for pricing:GetProducts (the Price List Query API, called in us-east-1): "
                        "allow that action to your identity, or download the public offer file and use --from-file "
                        "(`mlops cost refresh --help`)") from None
