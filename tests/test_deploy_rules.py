"""The deploy rules botocore cannot check (infra/deploy/runtime/service_rules.py): each rule at its limit
and one step past it, the synth-time check in the deploy construct, and the Lambda bundle importing
them on its own. The deployer's refusals at run time are in test_deployer.py."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_logs as logs

from infra.deploy.endpoint_deployer import EndpointDeployer
from infra.deploy.runtime import service_rules as rules
from infra.deploy.settings import EndpointSettings
from training.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def canary(kind, value):
    return {"Type": "CANARY", "CanarySize": {"Type": kind, "Value": value}, "WaitIntervalInSeconds": 600}


@pytest.mark.parametrize(
    "routing, fleet, broken",
    [
        (canary("CAPACITY_PERCENT", 50), 2, False),
        (canary("CAPACITY_PERCENT", 51), 8, True),
        (canary("INSTANCE_COUNT", 2), 4, False),
        (canary("INSTANCE_COUNT", 3), 4, True),
        (canary("CAPACITY_PERCENT", 10), 1, True),  # no canary is at most half of one instance
        ({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}, 1, False),
    ],
)
def test_a_canary_is_at_most_half_the_fleet(routing, fleet, broken):
    found = rules.canary_at_most_half_the_fleet(routing, fleet)
    assert (found is not None) == broken
    if found:
        assert found.rule == "canary_at_most_half_the_fleet" and found.doc == rules.CANARY_DOC


def test_guardrail_exclusions_inf1_and_marketplace_containers():
    inf2, inf1 = {"InstanceType": "ml.inf2.xlarge"}, {"InstanceType": "ml.inf1.xlarge"}
    assert rules.guardrails_not_excluded([inf2], [{"Image": "ours"}]) is None
    on_inf1 = rules.guardrails_not_excluded([inf1], [])
    assert on_inf1 and "ml.inf1.xlarge is Inf1" in on_inf1.problem and on_inf1.doc == rules.EXCLUSIONS_DOC
    marketplace = rules.guardrails_not_excluded([inf2], [{"Image": "theirs", "ProductId": "prod-123"}])
    assert marketplace and "Marketplace product (prod-123)" in marketplace.problem


def test_a_blue_green_update_keeps_the_variant_name():
    live = {
        "EndpointName": "e",
        "ProductionVariants": [{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
    }
    assert rules.same_variant_names([{"VariantName": "AllTraffic"}], live) is None
    renamed = rules.same_variant_names([{"VariantName": "Green"}], live)
    assert renamed and "['AllTraffic'] but the new config has ['Green']" in renamed.problem
    # A renamed variant has no live fleet to size a canary against: that rule alone is reported.
    assert [b.rule for b in rules.update_problems({}, [{"VariantName": "Green"}], live)] == [
        "same_variant_names"
    ]


def test_the_live_fleet_is_the_desired_count_of_the_same_variant():
    live = {
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentInstanceCount": 2, "DesiredInstanceCount": 3}
        ]
    }
    assert rules.live_fleet(live, "AllTraffic") == 3
    assert rules.live_fleet(live, "Other") is None


@pytest.mark.parametrize(
    "download, startup, broken",
    [(1800, 1800, False), (3600, 3600, False), (1799, 1800, True), (1800, 3601, True), (None, 1800, True)],
)
def test_neuron_startup_timeouts(download, startup, broken):
    variant = {"VariantName": "AllTraffic", "ContainerStartupHealthCheckTimeoutInSeconds": startup}
    if download is not None:
        variant["ModelDataDownloadTimeoutInSeconds"] = download
    found = rules.neuron_startup_timeouts(variant)
    assert (found is not None) == broken
    if found:
        assert found.doc == rules.VARIANT_DOC and "1800-3600 s" in found.problem


def test_the_deployment_timeout_is_above_the_waits():
    def policy(timeout):
        return {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600},
                "TerminationWaitInSeconds": 600,
                "MaximumExecutionTimeoutInSeconds": timeout,
            }
        }

    assert rules.deployment_timeout_covers_waits(policy(1201)) is None
    broken = rules.deployment_timeout_covers_waits(policy(1200))
    assert broken and broken.doc == rules.BLUE_GREEN_DOC and "not above the 1200 s of waits" in broken.problem


def test_a_broken_rule_reads_with_its_name_and_page():
    text = str(rules.Broken("some_rule", "https://docs.aws.amazon.com/x.html", "what is wrong; what to do"))
    assert text == "some_rule: what is wrong; what to do (see https://docs.aws.amazon.com/x.html)"


SETTINGS = EndpointSettings(
    endpoint_name="e",
    model_package_group="g",
    pipeline_name="p",
    instance_type="ml.inf2.xlarge",
    initial_instance_count=1,
    max_instance_count=4,
    invocations_per_instance=60,
    canary_percent=10,
    canary_wait_seconds=600,
    data_capture_percent=0,
    latency_alarm_ms=5000,
    log_retention=logs.RetentionDays.ONE_MONTH,
)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"canary_percent": 60}, "set infra.endpoint.canary_percent to 50 or less"),
        ({"instance_type": "ml.inf1.xlarge"}, "set infra.endpoint.instance_type to an ml.inf2.* type"),
    ],
)
def test_the_deploy_construct_refuses_settings_that_break_a_rule_at_synth(change, needle):
    bad = replace(SETTINGS, **change)
    assert SETTINGS.service_rule_problems() == []
    # The check runs before any resource is made, so the construct's other inputs are never read here.
    with pytest.raises(UserError, match="infra.endpoint breaks SageMaker deploy rules") as raised:
        EndpointDeployer(
            Stack(App(), "S"),
            "Deploy",
            settings=bad,
            names=None,
            artifacts=None,
            key=None,
            vpc=None,
            security_group=None,
            inference_repository=None,
            alarm_topic=None,
        )
    assert needle in str(raised.value) and "https://docs.aws.amazon.com/sagemaker/" in str(raised.value)


def test_a_one_instance_ceiling_never_uses_a_canary_so_its_percent_is_not_checked():
    assert replace(SETTINGS, max_instance_count=1, canary_percent=60).service_rule_problems() == []


# As the Lambda runtime does: the task root (the bundle) on the path, then the handler's module.
BUNDLE_IMPORT = "import sys; sys.path.insert(0, '.'); import deployer; print(deployer.service_rules.__name__)"


def test_the_lambda_bundle_imports_the_rules_without_the_repository(tmp_path):
    """The Lambda's code root is runtime/ alone, with the standard library and boto3: the deployer must
    find service_rules beside it. -S keeps out site-packages, where this repository is installed."""
    for source in (ROOT / "infra/deploy/runtime").glob("*.py"):
        (tmp_path / source.name).write_text(source.read_text())
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", BUNDLE_IMPORT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "service_rules"


def test_the_lambdas_serving_targets_are_the_configs():
    """The Lambda cannot import config/; its copy of the endpoint families and their compile targets must
    equal config/schema.py's, and both are what inference/compile.py exports for."""
    from config.schema import SERVING_TARGETS
    from inference.compile import NEURON_TARGETS

    assert rules.SERVING_TARGETS == SERVING_TARGETS
    assert sorted(SERVING_TARGETS.values()) == sorted(NEURON_TARGETS)


@pytest.mark.parametrize(
    ("target", "instance_type", "broken"),
    [
        ("inf2", "ml.inf2.48xlarge", False),
        ("trn2", "ml.trn2.48xlarge", False),
        ("inf2", "ml.trn2.48xlarge", True),
        ("trn2", "ml.inf2.xlarge", True),
        ("cpu", "ml.inf2.xlarge", True),
        ("inf2", "ml.trn1.32xlarge", True),
    ],
)
def test_an_artifact_runs_only_on_its_targets_family(target, instance_type, broken):
    found = rules.artifact_runs_on_the_instance(target, instance_type)
    assert (found is not None) == broken
    if found:
        assert found.doc.endswith("optimum-neuron/blob/v0.4.5/docs/source/guides/export_model.mdx")
