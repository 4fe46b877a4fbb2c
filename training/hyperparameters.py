"""Training hyperparameters: one typed model shared by the project config and the training job.

SageMaker hands hyperparameters to the container as strings (``hyperparameters.json``), so every
field also parses from its string form: numbers, ``true``/``false``, and lists either as JSON
(``["q_proj", "v_proj"]``, what the SageMaker SDK writes) or comma-separated (``q_proj,v_proj``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.errors import UserError

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainHyperparameters(BaseModel):
    """Everything that shapes one fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_model: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        description="Base model: a local folder or a Hugging Face Hub id. Ignored when the `model` channel is given.",
    )
    backend: Literal["auto", "torch", "neuron"] = Field(
        "auto", description="`neuron` on Trainium (optimum-neuron), `torch` on CPU/CUDA; `auto` picks."
    )
    max_steps: int = Field(60, gt=0, description="Optimizer steps to run.")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="Peak learning rate (AdamW).")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_steps: int = Field(5, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    per_device_train_batch_size: int = Field(4, gt=0, description="Packed blocks per device per micro-step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-steps per optimizer step.")
    max_seq_length: int = Field(
        256, ge=16, le=32768, description="Length of every packed block: the one input shape."
    )
    overlong: Literal["reject", "truncate"] = Field(
        "reject", description="What to do with an example longer than max_seq_length."
    )
    skip_invalid_lines: bool = Field(
        False, description="Skip (and count) invalid data lines instead of failing the job."
    )
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        min_length=1,
        description="Module names that get LoRA adapters.",
    )
    save_steps: int = Field(20, gt=0, description="Write a checkpoint every N optimizer steps.")
    save_total_limit: int = Field(2, gt=0, description="Complete checkpoints to keep.")
    logging_steps: int = Field(5, gt=0, description="Emit a metrics line every N optimizer steps.")
    seed: int = Field(42, ge=0, description="Seed for data order, dropout and LoRA init.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="`auto`: bf16 autocast where the hardware does it well (a CPU whose bf16 matmuls beat "
        "fp32 when timed at start, a bf16-capable GPU), else fp32.",
    )
    save_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the merged model written to the model dir."
    )
    num_threads: int = Field(0, ge=0, description="CPU threads for torch; 0 keeps torch's default.")
    # Neuron-only knobs; the torch backend ignores them.
    tensor_parallel_size: int = Field(1, gt=0, description="Neuron: tensor-parallel degree.")
    zero_1: bool = Field(True, description="Neuron: shard optimizer state across data-parallel ranks.")
    gradient_checkpointing: bool = Field(True, description="Neuron: recompute activations to save memory.")
    precompile: bool = Field(
        False, description="Neuron: run the graph-extraction pass (neuron_parallel_compile) only."
    )

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _split_module_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a valid JSON list ({exc.msg}); write e.g. q_proj,v_proj") from exc
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_cross_fields(self) -> TrainHyperparameters:
        if self.warmup_steps >= self.max_steps and self.max_steps > 1:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than max_steps ({self.max_steps})"
            )
        return self


def to_sagemaker_strings(hp: TrainHyperparameters) -> dict[str, str]:
    """The hyperparameters the way SageMaker passes them: every value a string."""
    out: dict[str, str] = {}
    for key, value in hp.model_dump().items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


def format_validation_error(exc: ValidationError, where: str) -> str:
    """Every problem, each with its key, what was given and what is allowed."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(hyperparameters)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(TrainHyperparameters.model_fields))
            problems.append(f"{key}: unknown hyperparameter; allowed: {allowed}")
            continue
        given = err.get("input")
        problems.append(f"{key}: {err['msg']} (got {given!r})")
    plural = "s" if len(problems) != 1 else ""
    lines = [f"{where}: {len(problems)} invalid hyperparameter{plural}:"]
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


def parse_sagemaker_hyperparameters(raw: dict[str, Any], where: str) -> TrainHyperparameters:
    """Validate the string-valued hyperparameters a training job receives.

    SageMaker also injects its own ``sagemaker_*`` keys in some configurations; those are not ours.
    """
    ours = {k: v for k, v in raw.items() if not k.startswith("sagemaker_")}
    try:
        return TrainHyperparameters.model_validate(ours)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, where)) from None
