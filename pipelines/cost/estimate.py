"""What one pipeline run and one day of the endpoint cost, from the config and the price table.

A pipeline run is priced at its ceiling: every step on its configured instances for its whole
MaxRuntimeInSeconds. SageMaker bills the seconds a job runs, so a real run costs less, and a cached
step costs nothing. The endpoint is priced per day at its initial size and at its autoscaling ceiling.
Only instance time is counted; what is left out is listed with each estimate. A type the price table has
no price for (ml.trn2.48xlarge hosting, say, in a table refreshed before AWS listed it, or in a region
that does not offer it) is shown as "no price", never as a guessed figure, and the totals say they leave
it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from config.schema import ProjectConfig
from pipelines.cost.prices import PriceTable, RegionPrices
from pipelines.definition.builder import COMPILE, EVALUATE, FINETUNE, PREPARE
from training.errors import UserError

STALE_AFTER_DAYS = 120  # SageMaker prices change rarely; older figures get a warning, not a refusal


@dataclass(frozen=True)
class CostLine:
    item: str
    usage: str  # training | processing | hosting: which price list applies
    instance_type: str
    count: int
    hours: float
    usd_per_hour: float | None  # None: the table has no price for this type and use
    config_key: str  # the key that sets this line: its instance type, or for the endpoint its count

    @property
    def usd(self) -> float | None:
        return None if self.usd_per_hour is None else self.count * self.hours * self.usd_per_hour


@dataclass(frozen=True)
class Estimate:
    region: str
    prices: RegionPrices
    run: list[CostLine]
    endpoint: list[CostLine]  # per day: initial size, then the autoscaling ceiling
    notes: list[str]
    unpriced: list[str]  # "<config key>=<type>: no <use> price in <region>", once per type and use

    @property
    def run_usd(self) -> float:
        """The priced steps' sum; it leaves out every line with no price (``unpriced``)."""
        return sum(line.usd for line in self.run if line.usd is not None)

    @property
    def run_complete(self) -> bool:
        return all(line.usd is not None for line in self.run)

    def as_json(self) -> dict[str, object]:
        def rows(lines: list[CostLine]) -> list[dict[str, object]]:
            return [
                {
                    "item": x.item,
                    "usage": x.usage,
                    "instance_type": x.instance_type,
                    "count": x.count,
                    "hours": x.hours,
                    "usd_per_hour": x.usd_per_hour,
                    "usd": None if x.usd is None else round(x.usd, 4),
                    "config_key": x.config_key,
                }
                for x in lines
            ]

        return {
            "region": self.region,
            "currency": "USD",
            "prices": {
                "source": self.prices.source,
                "published": self.prices.published,
                "fetched": self.prices.fetched,
            },
            "pipeline_run_max": {
                "steps": rows(self.run),
                "usd": round(self.run_usd, 4),
                "complete": self.run_complete,
            },
            "endpoint_per_day": rows(self.endpoint),
            "unpriced": self.unpriced,
            "notes": self.notes,
        }


def estimate(cfg: ProjectConfig, table: PriceTable, prices_path: Path, today: date | None = None) -> Estimate:
    region = cfg.project.region
    prices = table.regions.get(region)
    if prices is None:
        have = f" (it has {', '.join(sorted(table.regions))})" if table.regions else " (it has no region yet)"
        raise UserError(
            f"{prices_path} has no SageMaker prices for {region} (project.region){have}. Fill it from the AWS Price "
            f"List: `mlops cost refresh --region {region}` (needs pricing:GetProducts), or without credentials "
            f"download the public offer file and run `mlops cost refresh --region {region} --from-file FILE` "
            '(README, "What it costs")'
        )
    missing: list[str] = []

    def line(
        item: str,
        usage: str,
        type_key: str,
        instance_type: str,
        count: int,
        hours: float,
        config_key: str | None = None,
    ) -> CostLine:
        usd = prices.usage(usage).get(instance_type)
        if usd is None:
            missing.append(f"{type_key}={instance_type}: no {usage} price in {region}")
        return CostLine(item, usage, instance_type, count, hours, usd, config_key or type_key)

    p, inst, ep = cfg.pipeline, cfg.pipeline.instances, cfg.infra.endpoint
    processing_hours = p.processing_max_runtime_seconds / 3600
    run = [
        line(PREPARE, "processing", "pipeline.instances.prepare", inst.prepare, 1, processing_hours),
        line(
            FINETUNE,
            "training",
            "pipeline.instances.train",
            inst.train,
            inst.train_count,
            p.train_max_runtime_seconds / 3600,
        ),
        line(EVALUATE, "processing", "pipeline.instances.evaluate", inst.evaluate, 1, processing_hours),
        line(COMPILE, "processing", "pipeline.instances.compile", inst.compile, 1, processing_hours),
    ]
    endpoint = [
        line(
            f"{cfg.endpoint_name} (initial)",
            "hosting",
            "infra.endpoint.instance_type",
            ep.instance_type,
            ep.initial_instance_count,
            24.0,
            "infra.endpoint.initial_instance_count",
        ),
        line(
            f"{cfg.endpoint_name} (autoscaling ceiling)",
            "hosting",
            "infra.endpoint.instance_type",
            ep.instance_type,
            ep.max_instance_count,
            24.0,
            "infra.endpoint.max_instance_count",
        ),
    ]
    unpriced = list(dict.fromkeys(missing))
    notes = _notes(cfg, prices, today or date.today())
    if unpriced:
        notes.insert(
            0,
            f"No price, so left out of the totals: {'; '.join(unpriced)} ({prices_path}, prices published "
            f"{prices.published}). Either SageMaker does not offer that type for that use in {region}, or the "
            f"table predates it: `mlops cost refresh --region {region}`, or pick another type with --set.",
        )
    return Estimate(region, prices, run, endpoint, notes, unpriced)


def _notes(cfg: ProjectConfig, prices: RegionPrices, today: date) -> list[str]:
    p = cfg.pipeline
    notes = [
        f"The run is a ceiling: each step for its whole MaxRuntimeInSeconds (pipeline.train_max_runtime_seconds="
        f"{p.train_max_runtime_seconds}, pipeline.processing_max_runtime_seconds={p.processing_max_runtime_seconds}). "
        "SageMaker bills the seconds a job runs; a cached step costs nothing; CompileForInferentia runs only when "
        "the quality gate passes. A job the retry policy reruns after an internal error bills each attempt "
        "(up to 4); the figure counts one.",
    ]
    if p.spot:
        notes.append(
            "pipeline.spot is on: FineTune is shown at the on-demand price; managed spot bills less, by a "
            "discount that varies and that this estimate does not price."
        )
    notes.append(
        f"During a blue/green rollout the new fleet runs beside the old one for about "
        f"infra.endpoint.canary_wait_seconds={cfg.infra.endpoint.canary_wait_seconds} plus the shift: up to twice "
        "the endpoint's instances for that time."
    )
    left_out = [
        f"EBS volumes (pipeline.volume_size_gb={p.volume_size_gb} per job instance)",
        "S3",
        "CloudWatch",
        "KMS",
        "VPC interface endpoints",
        "data transfer",
    ]
    if cfg.infra.mlflow:
        left_out.append(
            f"the MLflow tracking server (infra.mlflow, size {cfg.infra.mlflow_size}, billed per hour "
            "while it exists)"
        )
    notes.append("Not counted: " + ", ".join(left_out) + ".")
    age = _age_days(prices.published, today)
    if age is None:
        notes.append(
            f"The table gives no publication date for these prices (published: {prices.published!r}): "
            f"`mlops cost refresh --region {cfg.project.region}` records it."
        )
    elif age > STALE_AFTER_DAYS:
        notes.append(
            f"These prices were published {age} days ago: `mlops cost refresh --region {cfg.project.region}`."
        )
    return notes


def _age_days(published: str, today: date) -> int | None:
    try:
        return (today - datetime.fromisoformat(published.replace("Z", "+00:00")).date()).days
    except ValueError:
        return None
