"""The pipeline's parameters: what each one means, its default from the config, and how an override is
checked. The cloud (`mlops pipeline start`) and the local executor check overrides by these same rules.

Instance types are deploy-time config (``pipeline.instances``), not parameters: whether a job may carry a
volume KMS key depends on the type (``service_rules``), and a parameter would leave the definition unable
to know it. Changing a type is a config edit and a ``cdk deploy``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.schema import ProjectConfig
from training.errors import UserError


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
        ParameterSpec(
            "CompileTarget",
            "String",
            "inf2",
            "`inf2`: Neuron export for Inferentia 2; `cpu`: packaging for the local executor's endpoint.",
            ("inf2", "cpu"),
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


_PARSERS: dict[str, Callable[[str], Any]] = {
    "Integer": int,
    "Float": float,
    "Boolean": lambda s: {"true": True, "false": False}[s.lower()],
}


def coerce_parameters(definition: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Defaults from the definition, overrides checked by name, type and enum; every problem at once."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    values: dict[str, Any] = {name: p.get("DefaultValue") for name, p in declared.items()}
    problems = []
    for name, raw in overrides.items():
        if name not in declared:
            problems.append(f"--param {name}: no such parameter; the pipeline has {', '.join(declared)}")
            continue
        kind = declared[name].get("Type", "String")
        try:
            value = _PARSERS.get(kind, str)(raw)
        except (ValueError, KeyError):
            problems.append(f"--param {name}={raw!r}: not a valid {kind}")
            continue
        allowed = declared[name].get("EnumValues")
        if name.endswith("S3Uri") and not str(value).startswith("s3://"):
            problems.append(f"--param {name}={raw!r}: must be an s3:// URI")
            continue
        if allowed and value not in allowed:
            problems.append(f"--param {name}={raw!r}: must be one of {', '.join(map(str, allowed))}")
            continue
        values[name] = value
    missing = [name for name, value in values.items() if value is None]
    problems += [f"parameter {name} has no default; give it with --param {name}=..." for name in missing]
    if problems:
        raise ParameterError("pipeline parameters: " + "; ".join(problems))
    return values
