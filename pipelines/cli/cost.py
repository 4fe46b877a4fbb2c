"""``mlops cost``: what a pipeline run and a day of the endpoint cost; ``mlops cost refresh`` fills the
price table (config/prices.yaml) from the AWS Price List."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from config.loader import PRICES_FILE
from pipelines.cli.options import ConfigFiles, SetItems, load, out, say, warn
from pipelines.operate.aws_errors import explained
from training.errors import UserError

if TYPE_CHECKING:
    from pipelines.cost.estimate import Estimate

app = typer.Typer()  # help: the callback's docstring
RUN_COLUMNS = ("step", "use", "instance", "count", "max hours", "USD/hour", "USD")
ENDPOINT_COLUMNS = ("endpoint", "instance", "count", "USD/hour", "USD/day", "USD/30 days")
Prices = Annotated[
    Path, typer.Option("--prices", help="The price table to read (and, for refresh, to write).")
]


NO_PRICE = "no price"


def _usd(value: float | None) -> str:
    return NO_PRICE if value is None else f"{value:,.2f}"


def _hourly(value: float | None) -> str:
    return NO_PRICE if value is None else f"{value:g}"


def _print_estimate(result: Estimate, pipeline_name: str, prices: Path) -> None:
    """The price source, the run's table, the endpoint's table, and what the estimate leaves out."""
    p = result.prices
    say(f"Prices for {result.region}: {p.source}, published {p.published}, fetched {p.fetched} ({prices})")
    title = f"One run of {pipeline_name}, every step to its max runtime"
    run = Table(*RUN_COLUMNS, title=title, title_justify="left")
    for line in result.run:
        hourly = (f"{line.hours:g}", _hourly(line.usd_per_hour), _usd(line.usd))
        run.add_row(line.item, line.usage, line.instance_type, str(line.count), *hourly)
    total = _usd(result.run_usd) + ("" if result.run_complete else f" + {NO_PRICE} lines")
    run.add_row("total", "", "", "", "", "", total, style="bold")
    out.print(run)
    endpoint = Table(*ENDPOINT_COLUMNS, title="The endpoint, per day", title_justify="left")
    for line in result.endpoint:
        daily = (
            _hourly(line.usd_per_hour),
            _usd(line.usd),
            _usd(None if line.usd is None else line.usd * 30),
        )
        endpoint.add_row(Text(line.item), line.instance_type, str(line.count), *daily)
    out.print(endpoint)
    for note in result.notes:
        say(f"- {note}")
    for missing in result.unpriced:
        warn(f"warning: {NO_PRICE}: {missing}")


@app.callback(invoke_without_command=True)
def cost(
    ctx: typer.Context,
    prices: Prices = PRICES_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """The ceiling of one pipeline run and the endpoint per day, in USD, for the configured region.

    Instance types, counts and max runtimes come from the config; prices from the table, with the date AWS published them.

    Example: mlops cost --set pipeline.instances.train=ml.trn1.32xlarge --set pipeline.train_max_runtime_seconds=7200
    """
    if ctx.invoked_subcommand is not None:
        if prices != PRICES_FILE or as_json or config or set_:
            # Options before the subcommand would belong to `cost`, and `refresh` would silently ignore them.
            raise UserError(
                f"put the options after `{ctx.invoked_subcommand}`, e.g. "
                f"`mlops cost {ctx.invoked_subcommand} --prices FILE`"
            )
        return
    cfg = load(config, set_)
    from pipelines.cost.estimate import estimate
    from pipelines.cost.prices import load_prices

    result = estimate(cfg, load_prices(prices), prices)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
        return
    _print_estimate(result, cfg.pipeline_name, prices)


@app.command("refresh")
def cost_refresh(
    region: Annotated[
        list[str],
        typer.Option("--region", "-r", help="Region to refresh (repeatable; default project.region)."),
    ] = [],
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Read a downloaded AmazonSageMaker bulk offer file "
            "instead of calling the Price List Query API (no credentials needed).",
        ),
    ] = None,
    prices: Prices = PRICES_FILE,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Rewrite a region's SageMaker prices in the table from the AWS Price List, with its publication date.

    The Query API needs credentials allowed pricing:GetProducts. Without them, download the region's public offer file and pass it with --from-file.

    Examples: mlops cost refresh --region us-east-1 --region us-west-2;
    curl -o sm.json https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/us-east-1/index.json
    && mlops cost refresh --from-file sm.json
    """
    cfg = load(config, set_)
    from pipelines.cost.prices import (
        PRICING_API_REGION,
        PriceTable,
        check_region,
        load_prices,
        read_offer_file,
        save_prices,
    )

    with explained(cfg.project.region):  # AWS errors become one line that says what to do
        regions = [check_region(r) for r in region] or [cfg.project.region]
        if from_file is not None and len(regions) > 1:
            raise UserError("--from-file holds one region's prices: give one --region with it")
        table = load_prices(prices) if prices.exists() else PriceTable()
        client = None
        for name in regions:
            if from_file is not None:
                if from_file.exists():  # a region's offer file runs to tens of MB: say what the wait is
                    warn(f"reading {from_file} ({from_file.stat().st_size / 1e6:.1f} MB)")
                fresh, conflicts = read_offer_file(from_file, name)
            else:
                if client is None:
                    import boto3

                    client = boto3.Session().client("pricing", region_name=PRICING_API_REGION)
                fresh, conflicts = _fetch(client, name)
            for conflict in conflicts:
                warn(f"warning: two prices for {conflict}")
            table.regions[name] = fresh
            save_prices(table, prices)  # region by region: a failure later keeps what was fetched
            counts = ", ".join(f"{len(fresh.usage(u))} {u}" for u in ("training", "processing", "hosting"))
            say(f"{prices}: {name} now has {counts} prices, published {fresh.published}")


def _fetch(client: Any, region: str) -> tuple[Any, list[str]]:
    from botocore.exceptions import ClientError

    from pipelines.cost.prices import fetch_region

    try:
        return fetch_region(client, region, warn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "AccessDeniedException"):
            raise  # the error boundary explains the rest
        raise UserError(
            "access denied for pricing:GetProducts (the Price List Query API, called in us-east-1): "
            "allow that action to your identity, or download the public offer file and use --from-file "
            "(`mlops cost refresh --help`)"
        ) from None
