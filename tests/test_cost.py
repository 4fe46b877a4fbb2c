"""`mlops cost` and `mlops cost refresh`: the price table, the AWS Price List parsing (Query API under
botocore's Stubber, which checks every request and response against the pricing service model, and the
bulk offer file), the estimate's arithmetic and every message a user can cause.

Prices here are synthetic test values, chosen so the sums are exact; they are not AWS prices.
"""

import json
from datetime import date
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from config import load_config
from config.loader import PRICES_FILE
from pipelines.cli.app import app
from pipelines.cost.estimate import estimate
from pipelines.cost.prices import (
    PriceTable,
    RegionPrices,
    fetch_region,
    load_prices,
    read_offer_file,
    save_prices,
)
from training.errors import UserError

runner = CliRunner()
PUBLISHED = "2026-11-20T18:00:00Z"


def product(
    region,
    plato,
    instance,
    usd,
    *,
    family="ML Instance",
    location_type="AWS Region",
    unit="Hrs",
    instance_name=None,
    sku=None,
):
    """One price-list document in the shape GetProducts returns (and, split up, the bulk file holds)."""
    sku = sku or f"SKU{abs(hash((region, plato, instance, usd))) % 10**8}"
    prefix = {"us-east-1": "USE1", "us-west-2": "USW2"}.get(region, "XX")
    short = {"Training": "Train", "Processing": "Processing", "Hosting": "Host"}.get(plato, plato)
    return {
        "product": {
            "productFamily": family,
            "sku": sku,
            "attributes": {
                "regionCode": region,
                "locationType": location_type,
                "platoinstancetype": plato,
                "instanceName": instance if instance_name is None else instance_name,
                "usagetype": f"{prefix}-{short}:{instance}",
                "servicecode": "AmazonSageMaker",
            },
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "sku": sku,
                    "offerTermCode": "JRTCKXETXF",
                    "priceDimensions": {
                        f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": unit,
                            "pricePerUnit": {"USD": f"{usd:.10f}"},
                            "description": f"${usd} per hour",
                        }
                    },
                }
            }
        },
        "version": "20261120180000",
        "publicationDate": PUBLISHED,
    }


GOOD = [
    product("us-east-1", "Training", "ml.trn1.2xlarge", 2.0),
    product("us-east-1", "Training", "ml.trn1.32xlarge", 30.0),
    product("us-east-1", "Processing", "ml.m5.xlarge", 0.25),
    product("us-east-1", "Processing", "ml.m5.2xlarge", 0.5),
    product("us-east-1", "Processing", "ml.m5.4xlarge", 1.0),
    product("us-east-1", "Hosting", "ml.inf2.xlarge", 1.5),
    # instanceName "NA": the type comes from the usagetype
    product("us-east-1", "Hosting", "ml.inf2.8xlarge", 3.0, instance_name="NA"),
]
NOISE = [
    product("us-west-2", "Training", "ml.trn1.2xlarge", 99.0),  # another region
    product("us-east-1", "Training", "ml.trn1.2xlarge", 77.0, location_type="AWS Outposts"),
    product("us-east-1", "Studio-JupyterLab", "ml.m5.xlarge", 55.0),  # another use
    product("us-east-1", "Hosting", "ml.m5.large", 0.0),  # free tier SKU
    product("us-east-1", "Training", "ml.m5.large", 9.0, unit="GB-Mo"),
    product("us-east-1", "Training", "ml.m5.large", 9.0, family="ML Storage"),
]


def region_prices(**overrides):
    values = {
        "source": "test values",
        "published": PUBLISHED,
        "fetched": "2026-11-25",
        "training": {"ml.trn1.2xlarge": 2.0},
        "processing": {"ml.m5.xlarge": 0.25, "ml.m5.2xlarge": 0.5, "ml.m5.4xlarge": 1.0},
        "hosting": {"ml.inf2.xlarge": 1.5},
    }
    return RegionPrices(**{**values, **overrides})


def write_table(path, **regions):
    save_prices(PriceTable(regions=regions or {"us-east-1": region_prices()}), path)
    return path


# ---- the table ----------------------------------------------------------------------------------------


def test_the_shipped_price_table_loads_and_every_region_says_where_and_when():
    table = load_prices(PRICES_FILE)
    for name, prices in table.regions.items():
        assert prices.source and prices.published and prices.fetched, name


def test_a_table_round_trips_through_yaml(tmp_path):
    path = write_table(tmp_path / "prices.yaml")
    assert path.read_text().startswith("# SageMaker on-demand prices")
    assert load_prices(path).regions["us-east-1"] == region_prices()


@pytest.mark.parametrize(
    "text, message",
    [
        ("regions:\n  us-east-1: [\n", "prices.yaml:3: not valid YAML"),
        (
            "regions:\n  us-east-1:\n    source: s\n    published: p\n    fetched: f\n    training:\n"
            "      ml.trn1.2xlarge: -3\n",
            "prices.yaml:7: regions.us-east-1.training.ml.trn1.2xlarge: Input should be greater than 0",
        ),
        (
            "regions:\n  us-east-1:\n    source: s\n    published: p\n    fetched: f\n    hostnig: {}\n",
            "prices.yaml:6: regions.us-east-1.hostnig: Extra inputs are not permitted",
        ),
        (
            "regions:\n  us-east-1:\n    published: p\n    fetched: f\n",
            "prices.yaml:2: regions.us-east-1.source: Field required",
        ),
    ],
)
def test_a_broken_table_names_the_file_line_and_key(tmp_path, text, message):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_prices(path)
    assert message in str(info.value)


def test_a_missing_table_says_how_to_create_it(tmp_path):
    with pytest.raises(UserError, match="price table not found; create it with `mlops cost refresh --prices"):
        load_prices(tmp_path / "none.yaml")


# ---- the AWS Price List -------------------------------------------------------------------------------


def _filters(region, plato):
    return [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "platoinstancetype", "Value": plato},
    ]


def _request(region, plato, token=None):
    request = {
        "ServiceCode": "AmazonSageMaker",
        "Filters": _filters(region, plato),
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    return {**request, "NextToken": token} if token else request


def stubbed_pricing(region="us-east-1"):
    """A real botocore pricing client whose answers are stubbed: requests and responses are validated
    against the service model, and every expected request must be made, in order."""
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(client)
    docs = {
        plato: [
            json.dumps(p) for p in GOOD + NOISE if p["product"]["attributes"]["platoinstancetype"] == plato
        ]
        for plato in ("Training", "Processing", "Hosting")
    }
    training = docs["Training"]
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": training[:2], "NextToken": "page2"},
        _request(region, "Training"),
    )
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": training[2:]},
        _request(region, "Training", "page2"),
    )
    for plato in ("Processing", "Hosting"):
        stub.add_response(
            "get_products", {"FormatVersion": "aws_v1", "PriceList": docs[plato]}, _request(region, plato)
        )
    return client, stub


def test_refresh_from_the_query_api_pages_through_each_use_and_keeps_only_this_regions_hourly_prices():
    client, stub = stubbed_pricing()
    progress = []
    with stub:
        prices, conflicts = fetch_region(client, "us-east-1", progress.append)
    stub.assert_no_pending_responses()
    assert prices.training == {"ml.trn1.2xlarge": 2.0, "ml.trn1.32xlarge": 30.0}
    assert prices.processing == {"ml.m5.xlarge": 0.25, "ml.m5.2xlarge": 0.5, "ml.m5.4xlarge": 1.0}
    assert prices.hosting == {"ml.inf2.xlarge": 1.5, "ml.inf2.8xlarge": 3.0}
    assert prices.published == PUBLISHED and prices.fetched == date.today().isoformat()
    assert "pricing:GetProducts" in prices.source and conflicts == []
    assert "us-east-1 training: page 2" in progress[1]


def test_two_prices_for_one_type_keep_the_higher_and_are_reported(tmp_path):
    doc = offer_file([*GOOD, product("us-east-1", "Hosting", "ml.inf2.xlarge", 1.75, sku="OTHER")])
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(doc))
    prices, conflicts = read_offer_file(path, "us-east-1")
    assert prices.hosting["ml.inf2.xlarge"] == 1.75
    assert conflicts == ["hosting ml.inf2.xlarge: 1.5 and 1.75 (kept 1.75)"]


def offer_file(docs, offer_code="AmazonSageMaker"):
    """The bulk offer file's layout: products by SKU, terms.OnDemand by SKU then term."""
    return {
        "formatVersion": "v1.0",
        "offerCode": offer_code,
        "version": "20261120180000",
        "publicationDate": PUBLISHED,
        "products": {d["product"]["sku"]: d["product"] for d in docs},
        "terms": {"OnDemand": {d["product"]["sku"]: d["terms"]["OnDemand"] for d in docs}},
    }


def test_refresh_from_a_bulk_offer_file_reads_the_same_prices(tmp_path):
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(offer_file(GOOD + NOISE)))
    prices, _ = read_offer_file(path, "us-east-1")
    assert prices.training == {"ml.trn1.2xlarge": 2.0, "ml.trn1.32xlarge": 30.0}
    assert prices.hosting == {"ml.inf2.xlarge": 1.5, "ml.inf2.8xlarge": 3.0}
    assert prices.published == PUBLISHED and "bulk offer file (offer.json" in prices.source


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file; download it with `curl -o"),
        ('{\n  "products": [,\n', "offer.json:2:16: not a JSON price list"),
        (
            json.dumps(offer_file(GOOD, offer_code="AmazonEC2")),
            "not an AmazonSageMaker offer file (offerCode: 'AmazonEC2'",
        ),
        (
            json.dumps(offer_file(GOOD)),
            "holds no SageMaker training, processing or hosting prices for region 'eu-west-1'; "
            "it covers us-east-1. Download that region's file: https://pricing.us-east-1."
            "amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/eu-west-1/index.json",
        ),
    ],
)
def test_a_wrong_offer_file_says_what_is_wrong_and_where_to_get_the_right_one(tmp_path, content, message):
    path = tmp_path / "offer.json"
    if content is not None:
        path.write_text(content)
    region = "eu-west-1" if "eu-west-1" in message else "us-east-1"
    with pytest.raises(UserError) as info:
        read_offer_file(path, region)
    assert message in str(info.value)


def test_a_region_the_query_api_knows_nothing_of_is_an_error_not_an_empty_table():
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(client)
    for plato in ("Training", "Processing", "Hosting"):
        stub.add_response(
            "get_products", {"FormatVersion": "aws_v1", "PriceList": []}, _request("us-east-9", plato)
        )
    with (
        stub,
        pytest.raises(
            UserError,
            match="holds no SageMaker training, processing or hosting prices for region 'us-east-9'",
        ),
    ):
        fetch_region(client, "us-east-9")


# ---- the estimate -------------------------------------------------------------------------------------


def test_the_estimate_multiplies_counts_max_runtimes_and_prices():
    cfg = load_config(
        overrides=[
            "pipeline.instances.train_count=2",
            "pipeline.train_max_runtime_seconds=7200",
            "pipeline.processing_max_runtime_seconds=1800",
            "infra.endpoint.max_instance_count=3",
        ]
    )
    result = estimate(
        cfg, PriceTable(regions={"us-east-1": region_prices()}), Path("p.yaml"), date(2026, 11, 25)
    )
    by_step = {line.item: (line.instance_type, line.count, line.hours, line.usd) for line in result.run}
    assert by_step == {
        "Prepare": ("ml.m5.xlarge", 1, 0.5, 0.125),
        "FineTune": ("ml.trn1.2xlarge", 2, 2.0, 8.0),
        "Evaluate": ("ml.m5.2xlarge", 1, 0.5, 0.25),
        "CompileForInferentia": ("ml.m5.4xlarge", 1, 0.5, 0.5),
    }
    assert result.run_usd == 8.875
    assert [(x.count, x.usd) for x in result.endpoint] == [(1, 36.0), (3, 108.0)]
    payload = result.as_json()
    assert payload["pipeline_run_max"]["usd"] == 8.875 and payload["prices"]["published"] == PUBLISHED
    assert not any("days ago" in note for note in result.notes)


def test_the_estimate_lists_what_it_leaves_out_and_warns_of_spot_and_old_prices():
    cfg = load_config(overrides=["pipeline.spot=true"])
    old = region_prices(published="2026-01-02T00:00:00Z")
    notes = " ".join(
        estimate(cfg, PriceTable(regions={"us-east-1": old}), Path("p.yaml"), date(2026, 11, 25)).notes
    )
    assert "pipeline.spot is on" in notes
    assert (
        "the MLflow tracking server (infra.mlflow" in notes
        and "EBS volumes (pipeline.volume_size_gb=100" in notes
    )
    assert "published 327 days ago: `mlops cost refresh --region us-east-1`" in notes


def test_a_region_missing_from_the_table_says_how_to_fill_it():
    cfg = load_config(
        overrides=["project.region=eu-west-1", "infra.availability_zones=[eu-west-1a, eu-west-1b]"]
    )
    with pytest.raises(UserError) as info:
        estimate(cfg, PriceTable(regions={"us-east-1": region_prices()}), Path("config/prices.yaml"))
    assert str(info.value).startswith(
        "config/prices.yaml has no SageMaker prices for eu-west-1 (project.region) "
        "(it has us-east-1). Fill it from the AWS Price List: `mlops cost refresh "
        "--region eu-west-1`"
    )


def test_an_instance_type_without_a_price_is_no_price_named_by_its_config_key_never_a_guess():
    """ml.trn2.48xlarge hosting, say, in a table that has no price for it: the line says "no price", the
    total leaves it out and says so, and the note names the config key and how to fill the table."""
    cfg = load_config(
        overrides=[
            "pipeline.instances.train=ml.trn1.32xlarge",
            "infra.endpoint.instance_type=ml.trn2.48xlarge",
            "serving.instance_types=[ml.trn2.48xlarge]",
        ]
    )
    result = estimate(cfg, PriceTable(regions={"us-east-1": region_prices()}), Path("p.yaml"))
    assert result.unpriced == [
        "pipeline.instances.train=ml.trn1.32xlarge: no training price in us-east-1",
        "infra.endpoint.instance_type=ml.trn2.48xlarge: no hosting price in us-east-1",
    ]  # the initial and ceiling lines share one entry
    finetune = next(line for line in result.run if line.item == "FineTune")
    assert finetune.usd_per_hour is None and finetune.usd is None
    assert all(line.usd is None for line in result.endpoint)
    assert not result.run_complete and result.run_usd == sum(x.usd or 0.0 for x in result.run) > 0
    assert result.notes[0].startswith(
        "No price, so left out of the totals: pipeline.instances.train=ml.trn1.32xlarge: no training price in "
        "us-east-1; infra.endpoint.instance_type=ml.trn2.48xlarge: no hosting price in us-east-1 (p.yaml, prices "
        "published 2026-11-20T18:00:00Z)."
    )
    payload = result.as_json()
    assert payload["pipeline_run_max"]["complete"] is False and payload["unpriced"] == result.unpriced
    assert (
        payload["endpoint_per_day"][0]["usd_per_hour"] is None
        and payload["endpoint_per_day"][0]["usd"] is None
    )


def test_mlops_cost_shows_no_price_rather_than_a_figure(tmp_path):
    path = write_table(tmp_path / "prices.yaml")
    trn2 = [
        "--set",
        "infra.endpoint.instance_type=ml.trn2.48xlarge",
        "--set",
        "serving.instance_types=[ml.trn2.48xlarge]",
    ]
    result = runner.invoke(app, ["cost", "--prices", str(path), *trn2], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no price" in result.output and "+ no price lines" not in result.output  # the run is fully priced
    assert (
        "warning: no price: infra.endpoint.instance_type=ml.trn2.48xlarge: no hosting price in us-east-1"
        in (result.output)
    )


# ---- the commands -------------------------------------------------------------------------------------


def test_mlops_cost_prints_the_run_the_endpoint_the_date_and_the_notes(tmp_path):
    path = write_table(tmp_path / "prices.yaml")
    result = runner.invoke(app, ["cost", "--prices", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Prices for us-east-1: test values, published {PUBLISHED}, fetched 2026-11-25" in result.output
    # defaults: 3 h processing ceilings, 6 h on one trn1.2xlarge, one inf2.xlarge (two at the ceiling)
    assert "total" in result.output and "17.25" in result.output  # 0.75 + 12 + 1.5 + 3
    assert "36.00" in result.output and "1,080.00" in result.output and "2,160.00" in result.output
    assert "- Not counted: EBS volumes" in result.output
    as_json = json.loads(runner.invoke(app, ["cost", "--prices", str(path), "--json"]).output)
    assert as_json["pipeline_run_max"]["usd"] == 17.25 and as_json["currency"] == "USD"


def test_mlops_cost_with_the_empty_shipped_table_exits_2_with_the_way_to_fill_it(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text((PRICES_FILE).read_text().split("regions:")[0] + "regions: {}\n")
    result = runner.invoke(app, ["cost", "--prices", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert "has no SageMaker prices for us-east-1 (project.region) (it has no region yet)" in result.output
    assert "--from-file FILE" in result.output


def test_mlops_cost_refresh_from_a_file_rewrites_one_region_and_keeps_the_others(tmp_path):
    path = write_table(tmp_path / "prices.yaml", **{"us-west-2": region_prices(source="negotiated rates")})
    offer = tmp_path / "sm.json"
    offer.write_text(json.dumps(offer_file(GOOD + NOISE)))
    result = runner.invoke(
        app, ["cost", "refresh", "--from-file", str(offer), "--prices", str(path)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    assert (
        "us-east-1 now has 2 training, 3 processing, 2 hosting prices, published 2026-11-20T18:00:00Z"
        in result.output
    )
    table = load_prices(path)
    assert table.regions["us-west-2"].source == "negotiated rates"
    assert table.regions["us-east-1"].training["ml.trn1.32xlarge"] == 30.0


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--region", "us-east-1", "--region", "us-west-2", "--from-file", "x.json"],
            "--from-file holds one region's prices: give one --region with it",
        ),
        (["--region", "virginia"], "--region 'virginia': must look like an AWS region"),
    ],
)
def test_mlops_cost_refresh_refuses_bad_arguments_before_any_call(tmp_path, args, message):
    result = runner.invoke(
        app, ["cost", "refresh", *args, "--prices", str(tmp_path / "p.yaml")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "p.yaml").exists()


def test_mlops_cost_refresh_without_credentials_says_how_to_get_them_or_use_a_file(tmp_path, monkeypatch):
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "COLUMNS": "300",
    }.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["cost", "refresh", "--prices", str(tmp_path / "p.yaml")])
    assert result.exit_code == 1
    assert "error: no AWS credentials found: run `aws configure`" in result.output
    assert not (tmp_path / "p.yaml").exists()


def test_mlops_cost_refresh_from_the_query_api_writes_the_table_and_shows_progress(tmp_path, monkeypatch):
    client, stub = stubbed_pricing()
    made = []

    class Session:  # boto3.Session as the command makes it, handing out the stubbed client
        def client(self, name, region_name=None):
            made.append((name, region_name))
            return client

    monkeypatch.setattr(boto3, "Session", Session)
    path = tmp_path / "prices.yaml"
    with stub:
        result = runner.invoke(app, ["cost", "refresh", "--prices", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    stub.assert_no_pending_responses()
    assert made == [("pricing", "us-east-1")]
    assert "us-east-1 training: page 2, 6 products" in result.output
    assert load_prices(path).regions["us-east-1"].hosting == {"ml.inf2.xlarge": 1.5, "ml.inf2.8xlarge": 3.0}


# ---- review fixes: hand edits, odd files, options in the wrong place, access denied ---------------------


def test_a_hand_edited_table_may_leave_dates_unquoted_but_not_misspell_a_region(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(
        "regions:\n  us-east-1:\n    source: negotiated rates\n    published: 2026-11-20\n"
        "    fetched: 2026-11-25\n    hosting:\n      ml.inf2.xlarge: 1.2\n"
        "  us-east1:\n    source: s\n    published: p\n    fetched: f\n"
    )
    with pytest.raises(UserError) as info:
        load_prices(path)
    message = str(info.value)
    assert "prices.yaml:8: regions.us-east1.[key]: String should match pattern" in message
    assert "published" not in message  # the unquoted dates were taken as text
    assert "delete the file and fill it again with `mlops cost refresh`" in message


def test_prices_with_no_publication_date_say_so_in_the_estimate():
    cfg = load_config()
    notes = " ".join(
        estimate(
            cfg, PriceTable(regions={"us-east-1": region_prices(published="unknown")}), Path("p.yaml")
        ).notes
    )
    assert "The table gives no publication date for these prices (published: 'unknown')" in notes


def test_hyphenated_instance_families_are_kept():
    from pipelines.cost.prices import parse_products, products_from_offer_file

    doc = offer_file([product("us-east-1", "Training", "ml.p6-b200.48xlarge", 100.0, instance_name="NA")])
    assert parse_products(products_from_offer_file(doc), "us-east-1").prices["training"] == {
        "ml.p6-b200.48xlarge": 100.0
    }


def test_an_offer_file_with_odd_products_skips_them_instead_of_crashing(tmp_path):
    doc = offer_file(GOOD)
    doc["products"]["BROKEN1"] = ["not", "a", "product"]
    doc["products"]["BROKEN2"] = {"productFamily": "ML Instance"}  # no attributes
    doc["terms"]["OnDemand"][GOOD[0]["product"]["sku"]] = "not terms"  # its price becomes unreadable
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(doc))
    prices, _ = read_offer_file(path, "us-east-1")
    assert "ml.trn1.2xlarge" not in prices.training and prices.training == {"ml.trn1.32xlarge": 30.0}
    path.write_text(json.dumps({**doc, "products": []}))
    with pytest.raises(UserError, match="not an AmazonSageMaker offer file .*no `products` mapping"):
        read_offer_file(path, "us-east-1")


def test_a_directory_as_the_price_table_is_an_error_not_a_traceback(tmp_path):
    with pytest.raises(UserError, match="cannot read the price table .*--prices takes a YAML file"):
        load_prices(tmp_path)


def test_options_before_refresh_are_refused_instead_of_ignored(tmp_path):
    result = runner.invoke(
        app, ["cost", "--prices", str(tmp_path / "p.yaml"), "refresh"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2
    assert "put the options after `refresh`, e.g. `mlops cost refresh --prices FILE`" in result.output


def test_china_regions_are_refused_with_the_reason():
    result = runner.invoke(app, ["cost", "refresh", "--region", "cn-north-1"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "China regions publish prices in CNY" in result.output


def test_access_denied_on_the_price_list_says_which_action_and_the_offline_way(tmp_path, monkeypatch):
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(client)
    stub.add_client_error(
        "get_products",
        service_error_code="AccessDeniedException",
        http_status_code=400,
        service_message="User is not authorized to perform: pricing:GetProducts",
        expected_params=_request("us-east-1", "Training"),
    )

    class Session:
        def client(self, name, region_name=None):
            return client

    monkeypatch.setattr(boto3, "Session", Session)
    with stub:
        result = runner.invoke(
            app, ["cost", "refresh", "--prices", str(tmp_path / "p.yaml")], env={"COLUMNS": "300"}
        )
    assert result.exit_code == 2
    assert (
        "access denied for pricing:GetProducts (the Price List Query API, called in us-east-1)"
        in result.output
    )
    assert "use --from-file" in result.output and not (tmp_path / "p.yaml").exists()


def test_a_type_priced_twice_in_a_hand_edit_is_refused_at_its_line(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(
        "regions:\n  us-east-1:\n    source: s\n    published: p\n    fetched: f\n    hosting:\n"
        "      ml.inf2.xlarge: 1.2\n      ml.inf2.xlarge: 1.3\n"
    )
    with pytest.raises(
        UserError, match=r"prices.yaml:8: regions.us-east-1.hosting.ml.inf2.xlarge: duplicate key; keep one"
    ):
        load_prices(path)
