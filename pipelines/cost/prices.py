"""The SageMaker price table that ``mlops cost`` reads: ``config/prices.yaml``.

On-demand USD per instance-hour, per region and per use (training jobs, processing jobs, endpoint
hosting), each region with the source of its figures and the date the AWS Price List published them.
The figures are written by ``mlops cost refresh`` from the AWS Price List (the Query API, or the public
bulk offer file it also reads offline) and never typed into code: a price nobody can trace to its
source and date is worse than none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from config.loader import PRICES_FILE, locate_keys
from config.schema import REGION_PATTERN
from training.errors import UserError

# The Price List's `platoinstancetype` attribute of an "ML Instance" product, by the job kind it bills.
USAGES = {"Training": "training", "Processing": "processing", "Hosting": "hosting"}
SERVICE_CODE = "AmazonSageMaker"
# The Price List Query API answers only in a few regions; us-east-1 serves the prices of every region.
PRICING_API_REGION = "us-east-1"
QUERY_SOURCE = "AWS Price List Query API (pricing:GetProducts, AmazonSageMaker, on-demand)"
BULK_URL = (
    "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/{region}/index.json"
)

# Families may hold a hyphen (ml.p6-b200.48xlarge).
INSTANCE_PATTERN = r"ml\.[a-z0-9-]+\.[a-z0-9]+"
_INSTANCE = re.compile(INSTANCE_PATTERN)

HEADER = """\
# SageMaker on-demand prices, USD per instance-hour, by region and use; read by `mlops cost`.
# Written by `mlops cost refresh` from the AWS Price List (see README, "What it costs"); each region
# keeps the source of its figures and the date AWS published them. Hand edits (negotiated rates)
# are allowed: say so in that region's `source`.
"""


InstanceType = Annotated[str, StringConstraints(pattern=f"^{INSTANCE_PATTERN}$")]
HourlyUSD = Annotated[float, Field(gt=0)]
RegionName = Annotated[str, StringConstraints(pattern=f"^{REGION_PATTERN}$")]


class RegionPrices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Where the figures come from.")
    published: str = Field(description="The price list's publicationDate (ISO 8601).")
    fetched: str = Field(description="The day `mlops cost refresh` read them (YYYY-MM-DD).")
    training: dict[InstanceType, HourlyUSD] = Field(default_factory=dict)
    processing: dict[InstanceType, HourlyUSD] = Field(default_factory=dict)
    hosting: dict[InstanceType, HourlyUSD] = Field(default_factory=dict)

    @field_validator("published", "fetched", mode="before")
    @classmethod
    def _date_text(cls, v: object) -> object:
        # A hand-written `published: 2026-11-20` is a YAML date, not a string: keep it as the text it was.
        return v.isoformat() if isinstance(v, (date, datetime)) else v

    def usage(self, name: str) -> dict[str, float]:
        return dict(getattr(self, name))


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions: dict[RegionName, RegionPrices] = Field(default_factory=dict)


def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    """The table, or a UserError that names the file, the line and the key of every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"{path}: price table not found; create it with `mlops cost refresh --prices {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the price table ({exc}); --prices takes a YAML file") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(
            f"{at}: not valid YAML ({getattr(exc, 'problem', None) or exc}); fix it, or delete the "
            "file and fill it again with `mlops cost refresh`"
        ) from None
    where: dict[tuple[str, ...], str] = {}
    duplicates: list[str] = []
    locate_keys(node, path, (), where, duplicates)
    if duplicates:  # YAML would keep the last silently; a price table must not have two answers
        raise UserError("price table problems: " + "; ".join(duplicates))
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(str(p) for p in error["loc"])
            at = next((where[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in where), f"{path}:1")
            problems.append(f"{at}: {'.'.join(loc)}: {error['msg'].removeprefix('Value error, ')}")
        raise UserError(
            "price table problems: fix these lines, or delete the file and fill it again with "
            "`mlops cost refresh` (other regions in it would have to be refreshed too):\n  "
            + "\n  ".join(problems)
        ) from None


def save_prices(table: PriceTable, path: Path = PRICES_FILE) -> None:
    def ordered(prices: RegionPrices) -> dict[str, Any]:  # where and when first, then the figures by type
        dumped = prices.model_dump()
        return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in dumped.items()}

    data = {"regions": {region: ordered(prices) for region, prices in sorted(table.regions.items())}}
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(HEADER + body, encoding="utf-8")
    tmp.replace(path)  # never a half-written table


# ---- the AWS Price List -------------------------------------------------------------------------------


@dataclass
class Product:
    """One price-list product with its on-demand terms, whichever form (Query API item or bulk file) it came in."""

    attributes: dict[str, str]
    product_family: str
    on_demand: list[dict[str, Any]]
    published: str | None


@dataclass
class ParsedPrices:
    prices: dict[str, dict[str, float]] = field(default_factory=lambda: {u: {} for u in USAGES.values()})
    published: str = ""
    conflicts: list[str] = field(default_factory=list)


def instance_type_of(attributes: dict[str, str]) -> str | None:
    """The ml.* type of a product: `instanceName`, else `instanceType`, else the tail of `usagetype`
    (e.g. USE1-Train:ml.trn1.2xlarge); some SKUs leave the first two empty or `NA`."""
    for key in ("instanceName", "instanceType"):
        value = attributes.get(key, "")
        if _INSTANCE.fullmatch(value):
            return value
    match = re.search(f":({INSTANCE_PATTERN})$", attributes.get("usagetype", ""))
    return match.group(1) if match else None


def hourly_usd(on_demand: list[dict[str, Any]]) -> float | None:
    """The on-demand USD price per hour, from the terms' price dimensions (unit Hrs); None when free or absent."""
    prices = []
    for term in on_demand:
        for dimension in map(_mapping, _mapping(term.get("priceDimensions")).values()):
            if str(dimension.get("unit", "")).lower() not in ("hrs", "hours", "hour"):
                continue
            try:
                usd = float(_mapping(dimension.get("pricePerUnit")).get("USD", "nan"))
            except (TypeError, ValueError):
                continue
            if usd > 0:
                prices.append(usd)
    return max(prices) if prices else None


def parse_products(products: Iterable[Product], region: str) -> ParsedPrices:
    """Training, processing and hosting prices of one region. Products of other regions, of Outposts and
    Local Zones, and of other uses are skipped; two prices for one type keep the higher (an estimate
    should not undershoot) and are reported."""
    parsed = ParsedPrices()
    for product in products:
        attrs = product.attributes
        usage = USAGES.get(attrs.get("platoinstancetype", ""))
        if (
            product.product_family != "ML Instance"
            or usage is None
            or attrs.get("regionCode") != region
            or attrs.get("locationType", "AWS Region") != "AWS Region"
        ):
            continue
        instance, usd = instance_type_of(attrs), hourly_usd(product.on_demand)
        if instance is None or usd is None:
            continue
        table = parsed.prices[usage]
        if instance in table and table[instance] != usd:
            parsed.conflicts.append(
                f"{usage} {instance}: {table[instance]} and {usd} (kept {max(usd, table[instance])})"
            )
        table[instance] = max(usd, table.get(instance, 0.0))
        if product.published and product.published > parsed.published:
            parsed.published = product.published
    return parsed


def _mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a mapping, else empty: a product laid out unexpectedly is skipped, not a crash."""
    return value if isinstance(value, dict) else {}


def _terms(value: Any) -> list[dict[str, Any]]:
    return [t for t in _mapping(value).values() if isinstance(t, dict)]


def products_from_query_items(items: Iterable[Any]) -> Iterator[Product]:
    """GetProducts' PriceList: one JSON document per product, as a string (botocore does not decode it)."""
    for item in items:
        doc = _mapping(json.loads(item) if isinstance(item, str) else item)
        product = _mapping(doc.get("product"))
        yield Product(
            attributes=_mapping(product.get("attributes")),
            product_family=str(product.get("productFamily", "")),
            on_demand=_terms(_mapping(doc.get("terms")).get("OnDemand")),
            published=doc.get("publicationDate"),
        )


def products_from_offer_file(doc: dict[str, Any]) -> Iterator[Product]:
    """The bulk offer file: products by SKU, and terms.OnDemand by SKU then by offer term."""
    on_demand = _mapping(_mapping(doc.get("terms")).get("OnDemand"))
    for sku, product in _mapping(doc.get("products")).items():
        product = _mapping(product)
        yield Product(
            attributes=_mapping(product.get("attributes")),
            product_family=str(product.get("productFamily", "")),
            on_demand=_terms(on_demand.get(sku)),
            published=doc.get("publicationDate"),
        )


def query_price_list(
    client: Any, region: str, progress: Callable[[str], None] = lambda _: None
) -> Iterator[Any]:
    """Every ML Instance product of `region` for the three uses, page by page (GetProducts returns at most 100)."""
    for plato, usage in USAGES.items():
        filters = [
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
            {"Type": "TERM_MATCH", "Field": "platoinstancetype", "Value": plato},
        ]
        token, pages, count = None, 0, 0
        while True:
            request: dict[str, Any] = {
                "ServiceCode": SERVICE_CODE,
                "Filters": filters,
                "FormatVersion": "aws_v1",
                "MaxResults": 100,
            }
            if token:
                request["NextToken"] = token
            response = client.get_products(**request)
            items = response.get("PriceList", [])
            pages, count = pages + 1, count + len(items)
            progress(f"{region} {usage}: page {pages}, {count} products")
            yield from items
            token = response.get("NextToken")
            if not token:
                break


def _region_prices(parsed: ParsedPrices, region: str, source: str, origin: str) -> RegionPrices:
    if not any(parsed.prices.values()):
        raise UserError(
            f"{origin} holds no SageMaker training, processing or hosting prices for region {region!r}: "
            "check the region (project.region or --region) and, for a file, that it is the AmazonSageMaker "
            f"offer of that region ({BULK_URL.format(region=region)})"
        )
    return RegionPrices(
        source=source,
        published=parsed.published or "unknown",
        fetched=date.today().isoformat(),
        **parsed.prices,
    )


def fetch_region(
    client: Any, region: str, progress: Callable[[str], None] = lambda _: None
) -> tuple[RegionPrices, list[str]]:
    parsed = parse_products(products_from_query_items(query_price_list(client, region, progress)), region)
    return _region_prices(parsed, region, QUERY_SOURCE, "the AWS Price List Query API"), parsed.conflicts


def read_offer_file(path: Path, region: str) -> tuple[RegionPrices, list[str]]:
    """Prices of `region` from a downloaded bulk offer file (no credentials needed to download one)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path}: no such file; download it with `curl -o {path} {BULK_URL.format(region=region)}`"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        raise UserError(
            f"{where}: not a JSON price list ({exc}); download it again: {BULK_URL.format(region=region)}"
        ) from None
    if (
        not isinstance(doc, dict)
        or doc.get("offerCode") != SERVICE_CODE
        or not isinstance(doc.get("products"), dict)
    ):
        found = doc.get("offerCode") if isinstance(doc, dict) else type(doc).__name__
        raise UserError(
            f"{path}: not an AmazonSageMaker offer file (offerCode: {found!r}, or no `products` "
            f"mapping); use {BULK_URL.format(region=region)}"
        )
    parsed = parse_products(products_from_offer_file(doc), region)
    if not any(parsed.prices.values()):
        regions = sorted(
            {
                str(_mapping(_mapping(p).get("attributes")).get("regionCode", ""))
                for p in doc["products"].values()
            }
            - {""}
        )
        raise UserError(
            f"{path} holds no SageMaker training, processing or hosting prices for region {region!r}"
            + (f"; it covers {', '.join(regions[:8])}{' ...' if len(regions) > 8 else ''}" if regions else "")
            + f". Download that region's file: {BULK_URL.format(region=region)}"
        )
    return _region_prices(
        parsed, region, f"AWS Price List bulk offer file ({path.name}, AmazonSageMaker, on-demand)", str(path)
    ), parsed.conflicts


def check_region(region: str) -> str:
    if not re.fullmatch(REGION_PATTERN, region):
        raise UserError(f"--region {region!r}: must look like an AWS region, e.g. us-east-1")
    if region.startswith("cn-"):
        raise UserError(
            f"--region {region}: China regions publish prices in CNY from their own Price List "
            "endpoint, which this command does not read; add that region to the table by hand, "
            "naming the source"
        )
    return region
