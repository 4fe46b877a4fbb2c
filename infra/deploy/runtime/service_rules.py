"""SageMaker deploy rules that botocore's service model cannot express, each named, each with its doc page.

botocore checks a request's shape: names, types, enums and minimums (not maximums). SageMaker refuses more
than that, or, worse, accepts a request and quietly does something else (an excluded endpoint loses its
canary and baking period). Each rule here is one such fact. The deployer Lambda (``deployer.py``, beside
this file) checks them before CreateEndpointConfig and UpdateEndpoint and refuses with the rule's name and
page; the deploy construct checks the config values known at synth time (``infra/deploy/settings.py``).

Standard library only: this module ships in the Lambda bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CANARY_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TrafficRoutingConfig.html"
EXCLUSIONS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html"
VARIANT_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html"
BLUE_GREEN_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_BlueGreenUpdatePolicy.html"
EXPORT_DOC = "https://github.com/huggingface/optimum-neuron/blob/v0.4.5/docs/source/guides/export_model.mdx"

# The compile target (compile_report.json ``target``) an endpoint family runs: "Models compiled for trn2
# (NeuronCore-v3) are not compatible with inf2 (NeuronCore-v2), and vice versa" (optimum-neuron v0.4.5
# EXPORT_DOC L47), and its server refuses the other one at startup, after the endpoint exists ("The neuron
# model is compiled for {neuron_config.target} and cannot run on a {instance_type} instance",
# optimum/commands/neuron/serve.py L144-146). Both families are endpoint types in botocore's
# ProductionVariantInstanceType enum (ml.inf2.*, ml.trn2.48xlarge). config/schema.py SERVING_TARGETS is the
# config's copy (this module ships alone in the Lambda); tests/test_deploy_rules.py holds them equal.
SERVING_TARGETS = {"ml.inf2.": "inf2", "ml.trn2.": "trn2"}

# The startup window a compiled Neuron model gets. Hugging Face's own SageMaker examples for its Neuron
# serving DLCs give the container 1800 s on ml.inf2.xlarge (an 8B model; dacorvo/deploy-inference-image-
# sagemaker, deploy_snippet.py: container_startup_health_check_timeout=1800) and 3600 s on ml.inf2.48xlarge
# (a 70B model; huggingface/blog, deepseek-r1-aws.md: container_startup_health_check_timeout=3600). Those
# containers download the model inside that window; ours is downloaded from S3 first, under
# ModelDataDownloadTimeoutInSeconds, so both get the same floor. 3600 is the API's maximum for both
# (API_ProductionVariant: "Valid Range: Minimum value of 60. Maximum value of 3600."), which botocore's
# validator does not check (it checks minimums only). No published example gives a trn2 endpoint its own
# window; the same range applies there (an 8B at TP 4 loads a quarter of the weights a core that TP 8 on
# inf2 does not, so the inf2 floor is no tighter on trn2).
NEURON_STARTUP_SECONDS = (1800, 3600)
STARTUP_TIMEOUTS = ("ModelDataDownloadTimeoutInSeconds", "ContainerStartupHealthCheckTimeoutInSeconds")


@dataclass(frozen=True)
class Broken:
    """One rule a request breaks: which, where it is written down, what is wrong and what to do."""

    rule: str
    doc: str
    problem: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.problem} (see {self.doc})"


def live_fleet(endpoint: dict[str, Any], variant_name: str) -> int | None:
    """The instance count a blue/green update gives the new fleet of ``variant_name``, None if not live.

    UpdateEndpoint's RetainAllVariantProperties: "To retain the variant properties of an endpoint when
    updating it, set RetainAllVariantProperties to true." (API_UpdateEndpoint). Which count is kept:
    "Update endpoints that use auto scaling" (https://docs.aws.amazon.com/sagemaker/latest/dg/
    endpoint-scaling-update.html), step 6: a variant of the same name is updated with the latest
    DesiredInstanceCount from DescribeEndpoint, whatever the new config's InitialInstanceCount says
    (paraphrased from the page's Chinese edition; the English text was not at hand).
    """
    for variant in endpoint.get("ProductionVariants", []):
        if variant.get("VariantName") == variant_name:
            count = variant.get("DesiredInstanceCount", variant.get("CurrentInstanceCount"))
            return int(count) if count is not None else None
    return None


def canary_at_most_half_the_fleet(routing: dict[str, Any], fleet: int) -> Broken | None:
    """CanarySize: "Value must be less than or equal to 50% of the variant's total instance count."
    (API_TrafficRoutingConfig; the Canary Traffic Shifting guide says the same of "the new fleet's
    capacity"). A canary is at least one instance, so a fleet of one has no canary that is at most half
    of it: that part is our reading, since the docs do not say how a percentage rounds to instances."""
    if routing.get("Type") != "CANARY":
        return None
    size = routing.get("CanarySize", {})
    kind, value = size.get("Type"), int(size.get("Value", 0))
    problem = ""
    if fleet < 2:
        problem = f"a canary on a fleet of {fleet} instance(s) is more than half of it; shift ALL_AT_ONCE"
    elif kind == "CAPACITY_PERCENT" and value > 50:
        problem = f"a {value}% canary is more than half of the fleet; set infra.endpoint.canary_percent to 50 or less"
    elif kind == "INSTANCE_COUNT" and 2 * value > fleet:
        problem = f"a canary of {value} instance(s) is more than half of a fleet of {fleet}"
    return Broken("canary_at_most_half_the_fleet", CANARY_DOC, problem) if problem else None


def guardrails_not_excluded(
    variants: list[dict[str, Any]], containers: list[dict[str, Any]]
) -> Broken | None:
    """ "If your endpoint uses any of the following features, you cannot use deployment guardrails on your
    endpoint, and your endpoint will fall back to using a blue/green deployment with all at once traffic
    shifting and no final baking period: Marketplace containers; Endpoints that use Inf1
    (Inferentia-based) instances" (Exclusions). The fallback is silent, so an update would go out
    unwatched by the rollback alarms: refuse instead. (Serverless and multi-variant endpoints are
    excluded from rolling deployments only; this deployer does blue/green.)"""
    problems = [
        f"instance type {v['InstanceType']} is Inf1, set infra.endpoint.instance_type to an ml.inf2.* type"
        for v in variants
        if str(v.get("InstanceType", "")).startswith("ml.inf1.")
    ]
    problems += [
        f"container {c.get('Image', '?')} is an AWS Marketplace product ({c['ProductId']}); deploy a package "
        "this project's pipeline registered"
        for c in containers
        if c.get("ProductId")
    ]
    if not problems:
        return None
    return Broken(
        "guardrails_not_excluded",
        EXCLUSIONS_DOC,
        "deployment guardrails (canary, baking, alarm rollback) are not supported here: "
        + "; ".join(problems),
    )


def same_variant_names(variants: list[dict[str, Any]], endpoint: dict[str, Any]) -> Broken | None:
    """ "When doing a blue/green or rolling deployment, your new endpoint configuration must have the same
    variant name as the old endpoint configuration." (Exclusions)"""
    live = sorted(v.get("VariantName", "") for v in endpoint.get("ProductionVariants", []))
    new = sorted(v.get("VariantName", "") for v in variants)
    if live == new:
        return None
    return Broken(
        "same_variant_names",
        EXCLUSIONS_DOC,
        f"endpoint {endpoint.get('EndpointName')} serves variant(s) {live} but the new config has {new}; "
        "a blue/green update cannot rename a variant, so point the endpoint at a config with the new "
        "name by hand once (aws sagemaker update-endpoint), or delete it and approve again",
    )


def neuron_startup_timeouts(variant: dict[str, Any]) -> Broken | None:
    """The variant's download and health-check timeouts within ``NEURON_STARTUP_SECONDS`` (see there)."""
    low, high = NEURON_STARTUP_SECONDS
    wrong = [
        f"{name}={variant.get(name)}"
        for name in STARTUP_TIMEOUTS
        if not isinstance(variant.get(name), int) or not low <= variant[name] <= high
    ]
    if not wrong:
        return None
    return Broken(
        "neuron_startup_timeouts",
        VARIANT_DOC,
        f"{', '.join(wrong)} in variant {variant.get('VariantName')}: a compiled Neuron model needs "
        f"{low}-{high} s to download and pass its first health check (Hugging Face's Neuron DLC examples "
        f"use {low}-{high}; {high} is the API's maximum); set both within that range in "
        "infra/deploy/runtime/deployer.py",
    )


def artifact_runs_on_the_instance(target: object, instance_type: str) -> Broken | None:
    """The compile report's ``target`` is the one the endpoint's family runs (``SERVING_TARGETS``)."""
    wanted = next((t for prefix, t in SERVING_TARGETS.items() if instance_type.startswith(prefix)), None)
    if wanted is not None and target == wanted:
        return None
    if wanted is None:
        problem = (
            f"instance type {instance_type} is neither an inf2 nor a trn2 type, the families a compiled artifact "
            "is served on; set infra.endpoint.instance_type to one"
        )
    else:
        problem = (
            f"the artifact was compiled for target={target!r}, but {instance_type} runs {wanted} artifacts only; "
            f"compile with --target {wanted} (the endpoint's family) or serve on an endpoint of that family"
        )
    return Broken("artifact_runs_on_the_instance", EXPORT_DOC, problem)


def deployment_timeout_covers_waits(deployment_config: dict[str, Any]) -> Broken | None:
    """MaximumExecutionTimeoutInSeconds: "Note that the timeout value should be larger than the total
    waiting time specified in TerminationWaitInSeconds and WaitIntervalInSeconds." (API_BlueGreenUpdatePolicy)"""
    policy = deployment_config.get("BlueGreenUpdatePolicy")
    if not policy or "MaximumExecutionTimeoutInSeconds" not in policy:
        return None
    waits = int(policy.get("TerminationWaitInSeconds", 0)) + int(
        policy["TrafficRoutingConfiguration"].get("WaitIntervalInSeconds", 0)
    )
    if int(policy["MaximumExecutionTimeoutInSeconds"]) > waits:
        return None
    return Broken(
        "deployment_timeout_covers_waits",
        BLUE_GREEN_DOC,
        f"MaximumExecutionTimeoutInSeconds={policy['MaximumExecutionTimeoutInSeconds']} is not above the "
        f"{waits} s of waits (TerminationWaitInSeconds + WaitIntervalInSeconds); lower "
        "infra.endpoint.canary_wait_seconds",
    )


def endpoint_config_problems(request: dict[str, Any], containers: list[dict[str, Any]]) -> list[Broken]:
    """The rules a CreateEndpointConfig request (and the containers of its models) must keep."""
    variants = request.get("ProductionVariants", [])
    found = [guardrails_not_excluded(variants, containers)] + [neuron_startup_timeouts(v) for v in variants]
    return [b for b in found if b]


def update_problems(
    deployment_config: dict[str, Any], variants: list[dict[str, Any]], endpoint: dict[str, Any]
) -> list[Broken]:
    """The rules an UpdateEndpoint with ``deployment_config`` to a config of ``variants`` must keep on the
    live ``endpoint`` (its DescribeEndpoint response), with the live fleet retained."""
    renamed = same_variant_names(variants, endpoint)
    if renamed:
        return [renamed]  # there is no live fleet of the new variant to size a canary against
    routing = deployment_config.get("BlueGreenUpdatePolicy", {}).get("TrafficRoutingConfiguration", {})
    found = [deployment_timeout_covers_waits(deployment_config)]
    for variant in variants:
        found.append(
            canary_at_most_half_the_fleet(routing, live_fleet(endpoint, variant["VariantName"]) or 0)
        )
    return [b for b in found if b]
