"""Rules SageMaker enforces on a job request that botocore's service model cannot express.

botocore checks a request's shape (field names, types, enums); the service refuses more than that. Each
rule here is one such refusal, named, with the doc page that states it. They run when the definition is
generated (``check_definition``: a definition SageMaker would refuse is never written) and when the local
executor starts a job (``check_request``: the twin refuses what SageMaker would refuse).

A value that is still a pipeline expression (a parameter, a step property) cannot be judged when the
definition is generated; its rule runs in the executor, once the value is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from training.errors import UserError
from training.neuron_cores import instance_family

API = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
EC2_INSTANCE_STORE = "https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-store-volumes.html"

# Instance families with NVMe instance store volumes (EC2 "Instance store volume limits" table,
# EC2_INSTANCE_STORE): the GPU/accelerator families below, and every family whose name carries a `d`
# after its generation (m5d, c5d, r5d, m6id, c6id, r6id, ...). Trainium: trn1 (trn1.2xlarge 474 GB,
# trn1.32xlarge 4 x 1900 GB NVMe), trn1n and trn2; Inferentia2 (inf2) is EBS-only.
LOCAL_STORAGE_FAMILIES = frozenset(
    {"g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "trn1", "trn1n", "trn2"}
)
_D_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")  # m5d, c6id, r6idn, m7gd


class ServiceRuleError(UserError):
    """A request SageMaker would refuse, for a rule its API model does not show."""


def has_local_storage(instance_type: str) -> bool:
    name = instance_family(instance_type)
    return name in LOCAL_STORAGE_FAMILIES or bool(_D_FAMILY.match(name))


@lru_cache(maxsize=1)
def _enum(shape: str) -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for(shape).enum)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    applies_to: str  # "Training" | "Processing"
    check: Callable[[dict[str, Any]], str | None]  # the request's arguments -> what is wrong, or None

    def problem(self, args: dict[str, Any]) -> str | None:
        found = self.check(args)
        return f"{found} [{self.name}; {self.source}]" if found else None


def _resources(args: dict[str, Any]) -> dict[str, Any]:
    if "ResourceConfig" in args:
        return args["ResourceConfig"]
    return args.get("ProcessingResources", {}).get("ClusterConfig", {})


def _known(value: Any) -> bool:
    """A literal; a parameter or property reference (a JSON object) is judged once it is resolved."""
    return isinstance(value, str | int | float)


def _volume_key_on_local_storage(args: dict[str, Any]) -> str | None:
    resources = _resources(args)
    instance, key = resources.get("InstanceType"), resources.get("VolumeKmsKeyId")
    if key and _known(instance) and has_local_storage(str(instance)):
        return (
            f"VolumeKmsKeyId is set, but {instance} has local instance storage, which SageMaker refuses a "
            "volume key for (its NVMe storage is encrypted by a hardware module on the instance); leave the "
            "key out for this instance type"
        )
    return None


def _instance_type_in(shape: str, job: str) -> Callable[[dict[str, Any]], str | None]:
    def check(args: dict[str, Any]) -> str | None:
        instance = _resources(args).get("InstanceType")
        if _known(instance) and str(instance) not in _enum(shape):
            return f"{instance} is not an instance type for {job} (botocore's {shape})"
        return None

    return check


RULES = (
    Rule(
        "volume-kms-key-vs-local-storage",
        API + "API_ResourceConfig.html (VolumeKmsKeyId: \"You can't request a VolumeKmsKeyId when using an "
        'instance type with local storage"); ' + EC2_INSTANCE_STORE,
        "Training",
        _volume_key_on_local_storage,
    ),
    Rule(
        "volume-kms-key-vs-local-storage",
        API + "API_ProcessingClusterConfig.html (VolumeKmsKeyId: the same sentence); " + EC2_INSTANCE_STORE,
        "Processing",
        _volume_key_on_local_storage,
    ),
    Rule(
        "processing-instance-family",
        API + "API_ProcessingClusterConfig.html (InstanceType: no Trainium or Inferentia family)",
        "Processing",
        _instance_type_in("ProcessingInstanceType", "processing jobs"),
    ),
    Rule(
        "training-instance-family",
        API + "API_ResourceConfig.html (InstanceType)",
        "Training",
        _instance_type_in("TrainingInstanceType", "training jobs"),
    ),
)


def request_problems(step_type: str, args: dict[str, Any]) -> list[str]:
    return [p for rule in RULES if rule.applies_to == step_type and (p := rule.problem(args))]


def check_request(step: str, step_type: str, args: dict[str, Any]) -> None:
    """Refuse a job request as SageMaker would, naming the step, the rule and its doc page."""
    found = request_problems(step_type, args)
    if found:
        raise ServiceRuleError(f"{step}: SageMaker would refuse this job: " + "; ".join(found))


def _steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        args = step.get("Arguments", {})
        yield from _steps(args.get("IfSteps", []) + args.get("ElseSteps", []))


def check_definition(definition: dict[str, Any]) -> None:
    """Every job step of a generated definition, with the values known at generation time."""
    for step in _steps(definition["Steps"]):
        if step["Type"] in ("Training", "Processing"):
            check_request(step["Name"], step["Type"], step["Arguments"])
