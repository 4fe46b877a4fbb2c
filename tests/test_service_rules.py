"""Service-side rules botocore cannot see (pipelines/definition/service_rules.py): each refuses a mutated
copy of the real definition, at generation time and in the local executor."""

import copy
import json
import re
from pathlib import Path

import pytest

from pipelines.definition.service_rules import (
    ServiceRuleError,
    check_definition,
    check_request,
    has_local_storage,
)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "pipeline.json").read_text())


def step(definition, name):
    def walk(steps):
        for s in steps:
            yield s
            yield from walk(s["Arguments"].get("IfSteps", []) + s["Arguments"].get("ElseSteps", []))

    return next(s for s in walk(definition["Steps"]) if s["Name"] == name)


def test_the_generated_definition_passes_every_rule():
    check_definition(GOLDEN)


def test_trainium_jobs_carry_no_volume_key_and_cpu_jobs_do():
    """trn1 has NVMe instance storage: SageMaker refuses a VolumeKmsKeyId for it (API_ResourceConfig)."""
    assert "VolumeKmsKeyId" not in step(GOLDEN, "FineTune")["Arguments"]["ResourceConfig"]
    cluster = step(GOLDEN, "Prepare")["Arguments"]["ProcessingResources"]["ClusterConfig"]
    assert cluster["VolumeKmsKeyId"] == "${KmsKeyArn}"


@pytest.mark.parametrize(
    ("name", "mutate", "rule"),
    [
        (
            "FineTune",
            lambda a: a["ResourceConfig"].update(VolumeKmsKeyId="${KmsKeyArn}"),
            "volume-kms-key-vs-local-storage",
        ),
        (
            "Prepare",
            lambda a: a["ProcessingResources"]["ClusterConfig"].update(InstanceType="ml.m5d.xlarge"),
            "volume-kms-key-vs-local-storage",
        ),
        (
            "Evaluate",
            lambda a: a["ProcessingResources"]["ClusterConfig"].update(InstanceType="ml.inf2.xlarge"),
            "processing-instance-family",
        ),
        (
            "FineTune",
            lambda a: a["ResourceConfig"].update(InstanceType="ml.inf2.xlarge"),
            "training-instance-family",
        ),
    ],
)
def test_each_rule_refuses_a_mutated_definition(name, mutate, rule):
    broken = copy.deepcopy(GOLDEN)
    mutate(step(broken, name)["Arguments"])
    with pytest.raises(
        ServiceRuleError, match=rf"{name}: SageMaker would refuse this job: .*\[{rule}; https://"
    ):
        check_definition(broken)


def test_a_reference_is_judged_once_resolved():
    """At generation time an instance type that is a reference cannot be judged; resolved, it is."""
    args = copy.deepcopy(step(GOLDEN, "FineTune")["Arguments"])
    args["ResourceConfig"].update(InstanceType={"Get": "Parameters.X"}, VolumeKmsKeyId="k")
    check_request("FineTune", "Training", args)
    args["ResourceConfig"]["InstanceType"] = "ml.trn1.32xlarge"
    with pytest.raises(ServiceRuleError, match="ml.trn1.32xlarge has local instance storage"):
        check_request("FineTune", "Training", args)


def test_local_storage_families():
    assert all(
        has_local_storage(t)
        for t in ("ml.trn1.2xlarge", "ml.trn2.48xlarge", "ml.g5.xlarge", "ml.m5d.large", "ml.c6id.2xlarge")
    )
    assert not any(
        has_local_storage(t) for t in ("ml.m5.xlarge", "ml.inf2.xlarge", "ml.c5n.2xlarge", "ml.t3.medium")
    )


def test_the_local_executor_refuses_what_sagemaker_would(tmp_path):
    from pipelines.local.executor import ExecutionFailed, Executor

    definition = {
        "Version": "2020-12-01",
        "Parameters": GOLDEN["Parameters"],
        "Steps": [copy.deepcopy(step(GOLDEN, "Prepare"))],
    }
    definition["Steps"][0].pop("CacheConfig", None)
    cluster = definition["Steps"][0]["Arguments"]["ProcessingResources"]["ClusterConfig"]
    cluster.update(InstanceType="ml.g5.xlarge", VolumeKmsKeyId="arn:aws:kms:us-east-1:000000000000:key/k")
    text = re.sub(r"\$\{(\w+)\}", r"local-\1", json.dumps(definition))  # placeholders filled
    defaults = {p["Name"]: p["DefaultValue"] for p in GOLDEN["Parameters"]}
    executor = Executor(json.loads(text), tmp_path / "store", "p", defaults, "e1")
    with pytest.raises(ExecutionFailed, match="volume-kms-key-vs-local-storage"):
        executor.run()
    assert not (tmp_path / "store" / "runs" / "e1" / "Prepare").exists()  # refused before the job ran
