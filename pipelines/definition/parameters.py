"""The pipeline's parameters: what each one means, its default from the config, and how an override is
checked. The cloud (`mlops pipeline start`) and the local executor check overrides by these same rules.

Instance types are deploy-time config (``pipeline.instances``), not parameters: whether a job may carry a
volume KMS key depends on the type (``service_rules``), and a parameter would leave the definition unable
to know it. Changing a type is a config edit and a ``cdk deploy``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.schema import ProjectConfig
from training.bounds import BOUNDS
from training.errors import UserError
from training.hyperparameters import echo, parse_sagemaker_hyperparameters, to_sagemaker_strings


class ParameterError(UserError):
    """An override that the pipeline would refuse: unknown name, wrong type, value not allowed."""


@dataclass(frozen=True)
class ParameterSpec:
    """A pipeline parameter. The definition format has no field for a description, so descriptions
    live here and are shown by `mlops pipeline parameters` and the README."""

    name: str
    kind: str  # String | Integer | Float
    default: Any
    description: str
    enum: tuple[str, ...] | None = None

    def as_definition(self) -> dict[str, Any]:
        """The parameter as the definition JSON declares it (what the local executor reads)."""
        declared: dict[str, Any] = {"Name": self.name, "Type": self.kind, "DefaultValue": self.default}
        if self.enum:
            declared["EnumValues"] = list(self.enum)
        return declared


def parameter_specs(cfg: ProjectConfig) -> list[ParameterSpec]:
    p, hp, inst = cfg.pipeline, cfg.training, cfg.pipeline.instances
    return [
        ParameterSpec(
            "TrainDataS3Uri",
            "String",
            p.train_data_s3_uri,
            "S3 prefix of the training JSONL (chat `messages` or `prompt`/`completion` lines).",
        ),
        ParameterSpec(
            "ValidationDataS3Uri",
            "String",
            p.validation_data_s3_uri,
            "S3 prefix of the held-out JSONL: validation loss during training and the evaluation set.",
        ),
        ParameterSpec(
            "BaseModelS3Uri",
            "String",
            p.base_model_s3_uri,
            "S3 prefix of the base model, a save_pretrained() folder (Llama or Qwen3 family).",
        ),
        ParameterSpec(
            "TrainInstanceCount",
            "Integer",
            inst.train_count,
            "Trainium instances of the FineTune step (torchrun across nodes when > 1).",
        ),
        ParameterSpec("MaxSteps", "Integer", hp.max_steps, "Optimizer steps of the fine-tune."),
        ParameterSpec("LearningRate", "Float", hp.learning_rate, "Peak learning rate (AdamW, after warmup)."),
        ParameterSpec(
            "PerDeviceTrainBatchSize",
            "Integer",
            hp.per_device_train_batch_size,
            "Packed blocks per NeuronCore per micro-step.",
        ),
        ParameterSpec(
            "GradientAccumulationSteps",
            "Integer",
            hp.gradient_accumulation_steps,
            "Micro-steps per optimizer step.",
        ),
        ParameterSpec("LoraR", "Integer", hp.lora_r, "LoRA rank."),
        ParameterSpec("LoraAlpha", "Integer", hp.lora_alpha, "LoRA alpha (scale = alpha / r)."),
        ParameterSpec(
            "QualityThreshold",
            "Float",
            p.quality_gate.threshold,
            f"Lowest `{p.quality_gate.metric}` in evaluation.json that passes the quality gate.",
        ),
        ParameterSpec(
            "ModelApprovalStatus",
            "String",
            p.approval_status,
            "Approval status of the registered model package; `Approved` deploys it at once.",
            ("PendingManualApproval", "Approved", "Rejected"),
        ),
        # The two values by which a laptop run differs from the cloud: the local executor sets them
        # (auto, cpu) and runs this same definition.
        ParameterSpec(
            "TrainBackend",
            "String",
            "neuron",
            "Training backend: `neuron` on Trainium; `auto`/`torch` are for the local executor.",
            ("neuron", "auto", "torch"),
        ),
        # The endpoint's family decides the export: an inf2 artifact does not run on trn2, nor the
        # reverse (inference/compile.py), so the default follows infra.endpoint.instance_type.
        ParameterSpec(
            "CompileTarget",
            "String",
            cfg.compile_target,
            f"`{cfg.compile_target}`: Neuron export for the endpoint's "
            f"{'Trainium 2' if cfg.compile_target == 'trn2' else 'Inferentia 2'}; "
            "`cpu`: packaging for the local executor's endpoint.",
            (cfg.compile_target, "cpu"),
        ),
    ]


# Hyperparameters that a run may override through a pipeline parameter; the rest are fixed by config.
PARAMETER_HYPERPARAMETERS = {
    "max_steps": "MaxSteps",
    "learning_rate": "LearningRate",
    "per_device_train_batch_size": "PerDeviceTrainBatchSize",
    "gradient_accumulation_steps": "GradientAccumulationSteps",
    "lora_r": "LoraR",
    "lora_alpha": "LoraAlpha",
}


# The range each numeric parameter must keep: the same training/bounds.py entry that the config key and
# the training job's hyperparameter are held to, so a value refused in one is refused in all three.
PARAMETER_BOUNDS = {
    **{param: key for key, param in PARAMETER_HYPERPARAMETERS.items()},
    "TrainInstanceCount": "train_instance_count",
    "QualityThreshold": "quality_threshold",
}


_PARSERS: dict[str, Callable[[str], Any]] = {
    "Integer": int,
    "Float": float,
    "Boolean": lambda s: {"true": True, "false": False}[s.lower()],
}

# How a number must be written. Python's int() and float() also read "1_000", " 7 ", "٣" (any Unicode
# digit), "inf" and "nan", and `mlops pipeline start` sends the text as given to StartPipelineExecution:
# the value checked here and the value the job gets must be the same, so only these spellings pass, on
# both twins. (The character classes are ASCII: [0-9], not \d, which matches any Unicode digit.)
_SPELLINGS: dict[str, tuple[re.Pattern[str], str]] = {
    "Integer": (
        re.compile(r"0|[1-9][0-9]*"),
        "written in plain ASCII digits, e.g. 1000 (no spaces, underscores, signs or leading zeros)",
    ),
    "Float": (
        re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"),
        "written as a plain decimal number in ASCII, e.g. 0.5 or 2e-4 (no spaces or underscores)",
    ),
}

# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or
# digit (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def s3_uri_problem(uri: str) -> str | None:
    """Why ``uri`` is no ``s3://bucket/prefix`` a job may read, or None.

    S3 itself would take a key with ``..`` segments as plain text, but the local twin maps keys to folders,
    where ``..`` climbs out of the store (``s3://local-data/../../../etc/``); such a key is refused on both
    sides, so a run refused at home is refused in the cloud too."""
    if not uri.startswith("s3://"):
        return "must be an s3:// URI, s3://bucket/prefix/"
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not _S3_BUCKET.fullmatch(bucket) or ".." in bucket:
        return (
            f"{echo(bucket)} is not an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens); "
            "write s3://bucket/prefix/"
        )
    if any(segment in (".", "..") for segment in key.split("/")):
        return (
            "the key has a '.' or '..' path segment; give the prefix itself, e.g. s3://bucket/datasets/train/"
        )
    return None


def _check_override(name: str, raw: str, declared: dict[str, Any]) -> tuple[Any, str | None]:
    """The typed value of one ``--param name=raw``, or the problem with it."""
    kind = declared.get("Type", "String")
    bound = BOUNDS.get(PARAMETER_BOUNDS.get(name, ""))
    shown = f"--param {name}={echo(raw)}"
    expected = bound.requirement() if bound else f"not a valid {kind}"
    pattern, spelling = _SPELLINGS.get(kind, (None, ""))
    if pattern is not None and not pattern.fullmatch(raw):
        return None, f"{shown}: {expected}, {spelling}"
    try:
        value = _PARSERS.get(kind, str)(raw)
    except (ValueError, KeyError):
        return None, f"{shown}: {expected}"
    if bound and (problem := bound.problem(value)):
        return None, f"{shown}: {problem}"
    if name.endswith("S3Uri") and (problem := s3_uri_problem(str(value))):
        return None, f"{shown}: {problem}"
    allowed = declared.get("EnumValues")
    if allowed and value not in allowed:
        return None, f"{shown}: must be one of {', '.join(map(str, allowed))}"
    return value, None


def _resolve_text(node: Any, values: dict[str, Any]) -> str | None:
    """A training step's hyperparameter as the job will get it, where only parameters feed it, else None.
    (The few expression forms the definition uses there: a literal, a parameter Get, a Join of them.)"""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and isinstance(node.get("Get"), str) and node["Get"].startswith("Parameters."):
        value = values.get(node["Get"].removeprefix("Parameters."))
        return (
            None
            if value is None
            else ("true" if value is True else "false" if value is False else str(value))
        )
    if isinstance(node, dict) and isinstance(node.get("Std:Join"), dict):
        join = node["Std:Join"]
        parts = [_resolve_text(part, values) for part in join.get("Values", [])]
        return None if None in parts else str(join.get("On", "")).join(p for p in parts if p is not None)
    return None


def _check_training_steps(definition: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """Validate each training step's hyperparameters, with these parameter values, as its job will.

    The bounds above see one parameter at a time; this catches what only the whole set can show (an
    explicit ``training.warmup_steps`` of 5 with ``--param MaxSteps=3``) before a job is paid for."""
    problems = []
    for step in definition.get("Steps", []):
        if step.get("Type") != "Training":
            continue
        given = step.get("Arguments", {}).get("HyperParameters", {})
        resolved = {key: _resolve_text(node, values) for key, node in given.items()}
        if None in resolved.values():
            continue  # fed by something other than parameters: only the job can check it
        try:
            parse_sagemaker_hyperparameters(resolved, f"step {step.get('Name')}")
        except UserError as exc:
            problems.append(
                f"{exc} (training.* keys are config: change them there or choose other --param values)"
            )
    return problems


def coerce_parameters(definition: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Defaults from the definition, overrides checked by name, type, range (training/bounds.py), S3 URI
    shape and enum, then the training steps' hyperparameters as a whole; every problem at once."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    values: dict[str, Any] = {name: p.get("DefaultValue") for name, p in declared.items()}
    problems = []
    for name, raw in overrides.items():
        if name not in declared:
            problems.append(f"--param {name}: no such parameter; the pipeline has {', '.join(declared)}")
            continue
        value, problem = _check_override(name, raw, declared[name])
        if problem:
            problems.append(problem)
        else:
            values[name] = value
    missing = [name for name, value in values.items() if value is None]
    problems += [f"parameter {name} has no default; give it with --param {name}=..." for name in missing]
    if not problems:
        problems = _check_training_steps(definition, values)
    if problems:
        raise ParameterError("pipeline parameters: " + "; ".join(problems))
    return values


def checks_definition(cfg: ProjectConfig) -> dict[str, Any]:
    """What ``coerce_parameters`` needs of the definition, without generating it (the SDK is slow): the
    parameters, and the FineTune hyperparameters as the builder writes them (config values as strings, the
    overridable ones fed by their parameters). For ``mlops pipeline start``, which has no definition."""
    hyperparameters: dict[str, Any] = dict(to_sagemaker_strings(cfg.training))
    for key, param in PARAMETER_HYPERPARAMETERS.items():
        hyperparameters[key] = {"Get": f"Parameters.{param}"}
    hyperparameters["backend"] = {"Get": "Parameters.TrainBackend"}
    return {
        "Parameters": [spec.as_definition() for spec in parameter_specs(cfg)],
        "Steps": [
            {"Name": "FineTune", "Type": "Training", "Arguments": {"HyperParameters": hyperparameters}}
        ],
    }


def config_with_parameters(cfg: ProjectConfig, values: dict[str, Any]) -> ProjectConfig:
    """The config as a run with these parameter values trains it: the plan of that run (``mlops plan``
    reads the config, and a run's parameters override part of it)."""
    training = {key: values[param] for key, param in PARAMETER_HYPERPARAMETERS.items() if param in values}
    instances = {"train_count": values["TrainInstanceCount"]} if "TrainInstanceCount" in values else {}
    return cfg.model_copy(
        update={
            "training": cfg.training.model_copy(update=training),
            "pipeline": cfg.pipeline.model_copy(
                update={"instances": cfg.pipeline.instances.model_copy(update=instances)}
            ),
        }
    )


def enforce_plan_with_parameters(cfg: ProjectConfig, values: dict[str, Any], given: dict[str, str]) -> None:
    """Refuse a run whose ``--param`` values make the config not fit (a larger batch, another LoRA rank,
    fewer instances to shard ZeRO-1 over), as ``config validate`` refuses the config itself. The base
    model (``BaseModelS3Uri``) is not seen by the plan: ``model.architecture`` describes it."""
    from config.plan import enforce_plan

    planned = config_with_parameters(cfg, values)
    if planned == cfg:
        return
    try:
        enforce_plan(planned)
    except UserError as exc:
        flags = " ".join(f"--param {name}={raw}" for name, raw in given.items())
        message = str(exc)
        for key, param in PARAMETER_HYPERPARAMETERS.items():  # the fix, said the way this run is set
            message = message.replace(f"--set training.{key}=", f"--param {param}=")
        raise UserError(f"with {flags}: {message}") from None
