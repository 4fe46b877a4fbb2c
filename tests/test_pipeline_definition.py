"""The generated SageMaker Pipeline definition: golden bytes, offline generation, request shapes checked
against botocore's service model, and every property reference pointing at something real."""

import copy
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from config import load_config
from pipelines.definition.builder import pipeline_definition
from pipelines.definition.placeholders import (
    PSEUDO_PARAMETERS,
    placeholder_names,
    substitute,
    used_placeholders,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests/golden/pipeline.json"
SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")

# The API each step type's Arguments are the request body of, and the name field the service adds.
REQUEST = {
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "RegisterModel": ("CreateModelPackage", None),
}
# Describe* responses: a `Get: Steps.<step>.<path>` reads that response (SageMaker's step properties).
PROPERTIES = {
    "Training": "DescribeTrainingJob",
    "Processing": "DescribeProcessingJob",
    "RegisterModel": "DescribeModelPackage",
}
EXECUTION_VARIABLES = {
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
}
# Realistic deploy-time values, so the service model's patterns and lengths apply to them too.
DEPLOY_VALUES = {
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "TrainingImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-train:abc",
    "InferenceImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-serve:abc",
    "DataBucket": "data-bucket-123",
    "ArtifactsBucket": "artifacts-bucket-123",
    "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
    "JobRoleName": "llm-jobs",
    "JobSecurityGroupId": "sg-0123456789abcdef0",
    "SourceCommit": "0" * 40,
    "PrivateSubnet1": "subnet-0123456789abcdef0",
    "PrivateSubnet2": "subnet-0123456789abcdef1",
    "MlflowTrackingServerArn": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/llm-neuron-mlops-mlflow",
}


@pytest.fixture(scope="module")
def text() -> str:
    return pipeline_definition(load_config([], []))


@pytest.fixture(scope="module")
def definition(text) -> dict[str, Any]:
    return json.loads(text)


def all_steps(definition: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for step in definition["Steps"]:
        out.append(step)
        if step["Type"] == "Condition":
            out += step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]
    return out


# ---- golden bytes and offline generation ---------------------------------------------------------


def test_definition_matches_the_golden_file(text):
    golden = GOLDEN.read_text()
    if text != golden:
        diff = "".join(
            difflib.unified_diff(golden.splitlines(True), text.splitlines(True), "golden", "generated", n=2)
        )
        pytest.fail(
            "the pipeline definition changed. If intended, run `make golden`, review and commit "
            f"tests/golden/pipeline.json. Diff (first 120 lines):\n{''.join(diff.splitlines(True)[:120])}"
        )


def test_cli_generates_identical_bytes_with_no_credentials_or_aws_config(tmp_path):
    """A clean environment: no AWS variables, an empty HOME (no ~/.aws, no SDK user config), and the
    definition cache off, so the SDK really builds it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(
        MLOPS_DEFINITION_CACHE="off",
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    out = tmp_path / "pipeline.json"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "pipeline", "definition", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == GOLDEN.read_bytes()
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr


def test_no_timestamps_or_local_paths_leak_in(text):
    assert not re.search(r"20\d\d-\d\d-\d\d[T ]\d\d:\d\d", text)
    assert str(ROOT) not in text and "/tmp/" not in text


# ---- deploy-time placeholders --------------------------------------------------------------------


def test_every_placeholder_is_known_and_substitutable(text):
    cfg = load_config([], [])
    known = set(placeholder_names(cfg.pipeline.subnet_count, mlflow=cfg.infra.mlflow)) | set(
        PSEUDO_PARAMETERS
    )
    used = used_placeholders(text)
    assert used <= known, f"unknown placeholders: {used - known}"
    assert {
        "TrainingImageUri",
        "InferenceImageUri",
        "KmsKeyArn",
        "JobRoleName",
        "JobSecurityGroupId",
        "PrivateSubnet1",
        "PrivateSubnet2",
        "ArtifactsBucket",
    } <= used
    assert "${" not in substitute(text, DEPLOY_VALUES)
    with pytest.raises(KeyError, match="no value for placeholder.*KmsKeyArn"):
        substitute(text, {k: v for k, v in DEPLOY_VALUES.items() if k != "KmsKeyArn"})


def test_the_fine_tune_tracks_to_the_managed_mlflow_server_only_when_it_exists(definition):
    (finetune,) = [s for s in definition["Steps"] if s["Name"] == "FineTune"]
    env = finetune["Arguments"]["Environment"]
    assert env["MLFLOW_TRACKING_URI"] == "${MlflowTrackingServerArn}"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "llm-neuron-mlops-finetune"
    without = pipeline_definition(load_config([], ["infra.mlflow=false"]))
    assert "MLFLOW_TRACKING_URI" not in without and "MlflowTrackingServerArn" not in without
    assert "MlflowTrackingServerArn" not in placeholder_names(2, mlflow=False)


# ---- request shapes against botocore --------------------------------------------------------------


class Resolver:
    """Replaces pipeline expressions with typed stand-ins: a parameter by its default (so instance types,
    counts and the approval status are checked as the values a default run sends), a step property or
    JsonGet by a value of the type the API wants at that place."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self.params = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}

    def value(self, node: Any, shape: Any) -> Any:
        if (
            isinstance(node, dict)
            and len(node) == 1
            and next(iter(node)) in ("Get", "Std:Join", "Std:JsonGet")
        ):
            return self.expression(node, shape)
        if isinstance(node, dict) and shape is not None and shape.type_name == "structure":
            return {k: self.value(v, shape.members.get(k)) for k, v in node.items()}
        if isinstance(node, dict) and shape is not None and shape.type_name == "map":
            return {k: self.value(v, shape.value) for k, v in node.items()}
        if isinstance(node, list) and shape is not None and shape.type_name == "list":
            return [self.value(v, shape.member) for v in node]
        return node

    def expression(self, node: dict[str, Any], shape: Any) -> Any:
        kind, body = next(iter(node.items()))
        if kind == "Get" and body.startswith("Parameters."):
            return self.params[body.split(".", 1)[1]]
        if kind == "Std:Join":
            return body["On"].join(
                str(self.value(v, None) if not isinstance(v, dict) else self.expression(v, None))
                for v in body["Values"]
            )
        # A step property, an execution variable or a JsonGet: known only at run time.
        if shape is not None and shape.type_name in ("integer", "long"):
            return 1
        if shape is not None and shape.type_name in ("float", "double"):
            return 1.0
        if shape is not None and shape.enum:
            return shape.enum[0]
        return "s3://artifacts-bucket-123/run/step/output" if "S3" in body.__repr__() else "runtime-value"


def shape_problems(value: Any, shape: Any, path: str) -> list[str]:
    """What ParamValidator leaves out: enum membership and the service's string patterns."""
    problems = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                problems += shape_problems(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            problems += shape_problems(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            problems += shape_problems(item, shape.value, f"{path}.{key}")
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.name} ({len(shape.enum)} values)")
        pattern = shape.metadata.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                compiled = None  # a Java-only construct; length and type checks still apply
            if compiled is not None and not compiled.fullmatch(value) and not compiled.search(value):
                problems.append(f"{path}: {value!r} does not match {shape.name}'s pattern {pattern}")
    return problems


def request_problems(definition: dict[str, Any]) -> list[str]:
    resolver = Resolver(definition)
    problems = []
    for step in all_steps(definition):
        if step["Type"] not in REQUEST:
            continue
        operation, name_field = REQUEST[step["Type"]]
        shape = SAGEMAKER.operation_model(operation).input_shape
        request = resolver.value(step["Arguments"], shape)
        if name_field:
            request[name_field] = f"pipelines-abc123-{step['Name']}"[:63]
        report = ParamValidator().validate(request, shape)
        if report.has_errors():
            problems += [
                f"{step['Name']} ({operation}): {line}" for line in report.generate_report().splitlines()
            ]
        problems += [f"{step['Name']} ({operation}): {p}" for p in shape_problems(request, shape, operation)]
    return problems


def test_every_step_request_is_valid_for_the_sagemaker_api(definition, text):
    resolved = json.loads(substitute(text, DEPLOY_VALUES))
    assert {s["Type"] for s in all_steps(resolved)} >= set(REQUEST)
    assert request_problems(resolved) == []


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (
            lambda d: d["Steps"][0]["Arguments"]["ProcessingResources"]["ClusterConfig"].update(
                InstanceTyp="ml.m5.xlarge"
            ),
            'Unknown parameter in ProcessingResources.ClusterConfig: "InstanceTyp"',
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["ResourceConfig"].update(InstanceType="ml.inf2.xlarge"),
            "'ml.inf2.xlarge' is not one of TrainingInstanceType",
        ),
        (
            lambda d: d["Steps"][0]["Arguments"]["ProcessingResources"]["ClusterConfig"].update(
                InstanceType="ml.trn1.2xlarge"
            ),
            "'ml.trn1.2xlarge' is not one of ProcessingInstanceType",
        ),
        (
            lambda d: d["Steps"][1]["Arguments"].pop("RoleArn"),
            'Missing required parameter in input: "RoleArn"',
        ),
        (
            lambda d: d["Steps"][1]["Arguments"]["AlgorithmSpecification"].update(
                TrainingInputMode="Streaming"
            ),
            "'Streaming' is not one of TrainingInputMode",
        ),
    ],
)
def test_the_request_check_catches_misspelt_fields_and_wrong_instance_types(text, mutate, needle):
    broken = json.loads(substitute(text, DEPLOY_VALUES))
    mutate(broken)
    problems = request_problems(broken)
    assert any(needle in p for p in problems), problems


def test_every_job_is_offline_for_the_hub_and_the_pipeline_creates_no_experiment(definition):
    """The jobs have no internet: HF_HUB_OFFLINE=1 fails a Hub lookup at once instead of stalling on
    connect timeouts. MLflow is the tracker, and the pipeline role has no Experiments grants, so the
    definition carries no PipelineExperimentConfig (the SDK's default would create one per execution)."""
    jobs = [s for s in all_steps(definition) if s["Type"] in ("Processing", "Training")]
    assert len(jobs) == 4
    for step in jobs:
        assert step["Arguments"]["Environment"]["HF_HUB_OFFLINE"] == "1", step["Name"]
    assert definition["PipelineExperimentConfig"] is None


def test_jobs_run_in_the_vpc_encrypted_with_the_kms_key(definition):
    for step in all_steps(definition):
        args = step.get("Arguments", {})
        if step["Type"] == "Processing":
            net = args["NetworkConfig"]
            assert net["VpcConfig"]["Subnets"] == ["${PrivateSubnet1}", "${PrivateSubnet2}"], step["Name"]
            assert (
                net["EnableNetworkIsolation"] is True and net["EnableInterContainerTrafficEncryption"] is True
            )
            assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "${KmsKeyArn}"
            assert args["ProcessingOutputConfig"]["KmsKeyId"] == "${KmsKeyArn}"
            assert args["StoppingCondition"]["MaxRuntimeInSeconds"] == 3 * 3600
        if step["Type"] == "Training":
            assert args["VpcConfig"]["SecurityGroupIds"] == ["${JobSecurityGroupId}"]
            assert args["EnableInterContainerTrafficEncryption"] is True
            # trn1 has NVMe instance storage, encrypted by the instance: SageMaker refuses a volume key
            # for it (service_rules.py), so the job carries none; its output is still KMS-encrypted.
            assert "VolumeKmsKeyId" not in args["ResourceConfig"]
            assert args["OutputDataConfig"]["KmsKeyId"] == "${KmsKeyArn}"
            assert args["StoppingCondition"]["MaxRuntimeInSeconds"] == 6 * 3600
            assert args["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
            assert args["Environment"]["NEURON_COMPILE_CACHE_URL"] == "s3://${ArtifactsBucket}/neuron-cache/"
            assert args["HyperParameters"]["backend"] == {"Get": "Parameters.TrainBackend"}
            assert "Execution." not in json.dumps(
                args["CheckpointConfig"]
            )  # keyed by inputs, so caching can hit
            assert step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
            names = {m["Name"] for m in args["AlgorithmSpecification"]["MetricDefinitions"]}
            assert {"train_loss", "eval_loss", "tokens_per_second"} <= names


def test_cloud_defaults_of_the_local_switches(definition):
    params = {p["Name"]: p for p in definition["Parameters"]}
    assert (
        params["TrainBackend"]["DefaultValue"] == "neuron"
        and params["CompileTarget"]["DefaultValue"] == "inf2"
    )


def test_spot_adds_max_wait_and_register_carries_inf2_types(definition):
    spot = json.loads(pipeline_definition(load_config([], ["pipeline.spot=true"])))
    train = next(s for s in all_steps(spot) if s["Type"] == "Training")["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    assert train["StoppingCondition"]["MaxWaitTimeInSeconds"] == 12 * 3600
    register = next(s for s in all_steps(definition) if s["Type"] == "RegisterModel")["Arguments"]
    spec = register["InferenceSpecification"]
    assert all(t.startswith("ml.inf2.") for t in spec["SupportedRealtimeInferenceInstanceTypes"])
    assert spec["Containers"][0]["Image"] == "${InferenceImageUri}"
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}


# ---- references ----------------------------------------------------------------------------------


def references(node: Any) -> list[tuple[str, Any]]:
    """Every Get and JsonGet in a step, with the JsonGet's property file and path."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        if set(node) == {"Get"}:
            found.append(("Get", node["Get"]))
        elif set(node) == {"Std:JsonGet"}:
            found.append(
                ("JsonGet", (node["Std:JsonGet"]["PropertyFile"]["Get"], node["Std:JsonGet"]["Path"]))
            )
            return found
        for value in node.values():
            found += references(value)
    elif isinstance(node, list):
        for value in node:
            found += references(value)
    return found


def property_path_problems(step: dict[str, Any], path: str) -> list[str]:
    """Walk `path` through the step's Describe* response shape; list indexes must name a declared output."""
    shape = SAGEMAKER.operation_model(PROPERTIES[step["Type"]]).output_shape
    for part in re.findall(r"[A-Za-z0-9]+(?:\['[^']*'\])?", path):
        name, _, index = part.partition("['")
        if shape.type_name != "structure" or name not in shape.members:
            return [f"{path}: {name!r} is not a property of {shape.name}"]
        shape = shape.members[name]
        if index:
            index = index.rstrip("']")
            declared = [o["OutputName"] for o in step["Arguments"]["ProcessingOutputConfig"]["Outputs"]]
            if index not in declared:
                return [f"{path}: output {index!r} is not declared by step {step['Name']} ({declared})"]
            shape = shape.member
    return []


def reference_problems(definition: dict[str, Any], samples: dict[str, dict[str, Any]]) -> list[str]:
    steps = {s["Name"]: s for s in all_steps(definition)}
    params = {p["Name"] for p in definition["Parameters"]}
    problems = []
    for step in steps.values():
        for kind, ref in references(step.get("Arguments", {})):
            if kind == "JsonGet":
                file_ref, json_path = ref
                _, owner, _, file_name = file_ref.split(".")
                declared = {f["PropertyFileName"]: f for f in steps.get(owner, {}).get("PropertyFiles", [])}
                if file_name not in declared:
                    problems.append(f"{step['Name']}: property file {owner}.{file_name} is not declared")
                    continue
                value: Any = samples[file_name]
                for key in json_path.split("."):
                    if not isinstance(value, dict) or key not in value:
                        problems.append(
                            f"{step['Name']}: {json_path} is not in {file_name} "
                            f"({declared[file_name]['FilePath']} as our code writes it)"
                        )
                        break
                    value = value[key]
            elif ref.startswith("Parameters."):
                if ref.split(".", 1)[1] not in params:
                    problems.append(f"{step['Name']}: {ref} is not a declared parameter")
            elif ref.startswith("Execution."):
                if ref.split(".", 1)[1] not in EXECUTION_VARIABLES:
                    problems.append(f"{step['Name']}: {ref} is not an execution variable")
            elif ref.startswith("Steps."):
                _, owner, path = ref.split(".", 2)
                if owner not in steps:
                    problems.append(f"{step['Name']}: {ref} names no step")
                else:
                    problems += [f"{step['Name']}: {p}" for p in property_path_problems(steps[owner], path)]
            else:
                problems.append(f"{step['Name']}: {ref} is no known reference")
    return problems


@pytest.fixture(scope="module")
def property_file_samples(tmp_path_factory, tiny_model, fake_inf2_export) -> dict[str, dict[str, Any]]:
    """The three property files, written by our own code on the tiny model (not hand-written)."""
    from inference.compile import CompileSettings, compile_model
    from inference.evaluate import EvalSettings, evaluate
    from training.base_model import load_tokenizer
    from training.prepare import PrepareSettings, run_prepare

    tmp = tmp_path_factory.mktemp("property_files")
    task = ROOT / "training/tasks/date_normalization"
    data = tmp / "val.jsonl"
    data.write_text("\n".join((task / "validation.jsonl").read_text().splitlines()[:4]) + "\n")
    stats = run_prepare(
        data, data, load_tokenizer(str(tiny_model)), tmp / "prepared", PrepareSettings(256), "0" * 64
    )
    evaluation = evaluate(
        str(tiny_model), data, EvalSettings(batch_size=4, max_new_tokens=4), (str(tiny_model), None)
    )

    import inference.compile as compile_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compile_module, "_compile_inf2", fake_inf2_export)  # the export cannot run here
        report = compile_model(tiny_model, tmp / "compiled", CompileSettings(target="inf2"), archive=True)
    return {"DataStats": stats, "EvaluationReport": evaluation, "CompileReport": report}


def test_every_reference_points_at_a_real_step_property_or_file_key(definition, property_file_samples):
    assert reference_problems(definition, property_file_samples) == []
    # The gate compares numbers, and the package metadata takes strings.
    gate = next(s for s in definition["Steps"] if s["Type"] == "Condition")
    path = gate["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"]
    value: Any = property_file_samples["EvaluationReport"]
    for key in path.split("."):
        value = value[key]
    assert isinstance(value, float)
    register = next(s for s in all_steps(definition) if s["Type"] == "RegisterModel")
    for key, item in register["Arguments"]["CustomerMetadataProperties"].items():
        if isinstance(item, dict):
            sample: Any = property_file_samples[item["Std:JsonGet"]["PropertyFile"]["Get"].split(".")[-1]]
            for part in item["Std:JsonGet"]["Path"].split("."):
                sample = sample[part]
            assert isinstance(sample, str), key


def test_the_reference_check_catches_broken_references(definition, property_file_samples):
    broken = copy.deepcopy(definition)
    text = json.dumps(broken)
    text = text.replace("Outputs['packed_train']", "Outputs['packed_trian']", 1)
    text = text.replace("Parameters.LoraR", "Parameters.LoraRank", 1)
    text = text.replace("metrics.exact_match.value", "metrics.exactmatch.value", 1)
    text = text.replace("ModelArtifacts.S3ModelArtifacts", "ModelArtifacts.S3Uri", 1)
    problems = reference_problems(json.loads(text), property_file_samples)
    joined = "\n".join(problems)
    assert "output 'packed_trian' is not declared by step Prepare" in joined
    assert "Parameters.LoraRank is not a declared parameter" in joined
    assert "metrics.exactmatch.value is not in EvaluationReport" in joined
    assert "'S3Uri' is not a property of ModelArtifacts" in joined
