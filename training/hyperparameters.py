"""Training hyperparameters: one typed model shared by the project config and the training job.

SageMaker hands hyperparameters to the container as strings (``hyperparameters.json``), so every
field also parses from its string form: numbers, ``true``/``false``, and lists either as JSON
(``["q_proj", "v_proj"]``, what the SageMaker SDK writes) or comma-separated (``q_proj,v_proj``).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.bounds import checked
from training.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The warmup a run gets when nobody chose one; a run shorter than it gets max_steps - 1 instead.
DEFAULT_WARMUP_STEPS = 5
# Opt-in switches written to SageMaker's hyperparameters only when turned on (to_sagemaker_strings).
OPT_IN_KEYS = ("torch_compile",)
# What an error message echoes of a value a user gave: a YAML alias can expand to megabytes.
ECHO_LIMIT = 200


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
    max_steps: Annotated[int, checked("max_steps")] = Field(60, description="Optimizer steps to run.")
    learning_rate: Annotated[float, checked("learning_rate")] = Field(
        2e-4, description="Peak learning rate (AdamW)."
    )
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_steps: Annotated[int, checked("warmup_steps")] = Field(
        DEFAULT_WARMUP_STEPS,
        description="Linear warmup steps. Left unset, min(5, max_steps - 1), so a short run never needs it set.",
    )
    weight_decay: Annotated[float, checked("weight_decay")] = Field(0.0, description="AdamW weight decay.")
    max_grad_norm: Annotated[float, checked("max_grad_norm")] = Field(
        1.0, description="Gradient clipping norm."
    )
    per_device_train_batch_size: Annotated[int, checked("per_device_train_batch_size")] = Field(
        4, description="Packed blocks per device per micro-step."
    )
    gradient_accumulation_steps: Annotated[int, checked("gradient_accumulation_steps")] = Field(
        1, description="Micro-steps per optimizer step."
    )
    max_seq_length: Annotated[int, checked("max_seq_length")] = Field(
        256, description="Length of every packed block: the one input shape."
    )
    overlong: Literal["reject", "truncate"] = Field(
        "reject", description="What to do with an example longer than max_seq_length."
    )
    skip_invalid_lines: bool = Field(
        False, description="Skip (and count) invalid data lines instead of failing the job."
    )
    lora_r: Annotated[int, checked("lora_r")] = Field(16, description="LoRA rank.")
    lora_alpha: Annotated[int, checked("lora_alpha")] = Field(
        32, description="LoRA scaling numerator (scale = alpha / r)."
    )
    lora_dropout: Annotated[float, checked("lora_dropout")] = Field(
        0.05, description="Dropout on the LoRA path."
    )
    lora_target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        min_length=1,
        description="Module names that get LoRA adapters.",
    )
    save_steps: Annotated[int, checked("save_steps")] = Field(
        20, description="Write a checkpoint every N optimizer steps."
    )
    save_total_limit: Annotated[int, checked("save_total_limit")] = Field(
        2, description="Complete checkpoints to keep."
    )
    logging_steps: Annotated[int, checked("logging_steps")] = Field(
        5, description="Emit a metrics line every N optimizer steps."
    )
    seed: Annotated[int, checked("seed")] = Field(
        42, description="Seed for data order, dropout and LoRA init."
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="`auto`: bf16 autocast where the hardware does it well (a CPU whose bf16 matmuls beat "
        "fp32 when timed at start, a bf16-capable GPU), else fp32.",
    )
    save_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the merged model written to the model dir."
    )
    num_threads: Annotated[int, checked("num_threads")] = Field(
        0, description="CPU threads for torch; 0 keeps torch's default."
    )
    torch_compile: bool = Field(
        False,
        description="Torch backend: torch.compile the decoder (one input shape, one graph). Off by default: it "
        "did not pay on a 2-core AVX2 CPU (bench/train_throughput.py); where it cannot compile, the run says "
        "why and trains eagerly.",
    )
    # Neuron-only knobs; the torch backend ignores them.
    tensor_parallel_size: Annotated[int, checked("tensor_parallel_size")] = Field(
        1, description="Neuron: tensor-parallel degree."
    )
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
        if self.warmup_steps < self.max_steps or self.warmup_steps == 0:
            return self
        if "warmup_steps" in self.model_fields_set:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than max_steps ({self.max_steps}): "
                f"the run would end before reaching its peak learning rate; lower warmup_steps to at most "
                f"{self.max_steps - 1}, or leave it unset to get min({DEFAULT_WARMUP_STEPS}, max_steps - 1)"
            )
        # Nobody chose this warmup: the default must never make a short run (max_steps=2) invalid. The
        # field is written past validate_assignment so it stays "unset", and to_sagemaker_strings leaves it
        # out: the container then derives it again from the max_steps it receives (a MaxSteps parameter).
        clamped = self.max_steps - 1
        log.info(
            "warmup_steps=%d: the default %d shortened to fit max_steps=%d",
            clamped,
            self.warmup_steps,
            self.max_steps,
        )
        object.__setattr__(self, "warmup_steps", clamped)
        return self


def to_sagemaker_strings(hp: TrainHyperparameters) -> dict[str, str]:
    """The hyperparameters the way SageMaker passes them: every value a string."""
    out: dict[str, str] = {}
    # An unset warmup is derived from max_steps (see _check_cross_fields); leaving it out lets the job derive
    # it from the max_steps it actually gets, which a pipeline parameter may change after this is written.
    unset = set() if "warmup_steps" in hp.model_fields_set else {"warmup_steps"}
    # An opt-in switch that is off is left out too: the job's default is the same (off), and the pipeline
    # definition (tests/golden/pipeline.json) does not change for a switch nobody turned on.
    unset |= {k for k in OPT_IN_KEYS if not getattr(hp, k)}
    for key, value in hp.model_dump(exclude=unset).items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, cut at ``limit`` characters with the full size said.

    reprlib bounds the work as well as the text: a YAML alias chain shares one object many times, and a
    full repr of it would expand every copy."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, limit, limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 10
    text = short.repr(value)
    if isinstance(value, str) and len(value) > limit:
        return f"{text[:limit]}… ({len(value)} chars)"
    if isinstance(value, (list, dict, tuple, set)) and (len(text) > limit or "..." in text):
        return f"{text[:limit]}… ({len(value)} items)"
    return text[:limit]


def format_validation_error(exc: ValidationError, where: str) -> str:
    """Every problem, each with its key, what was given and what is allowed."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(hyperparameters)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(TrainHyperparameters.model_fields))
            problems.append(f"{key}: unknown hyperparameter; allowed: {allowed}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        if isinstance(given, dict):
            # A cross-field check: its message names the values; echoing every hyperparameter helps nobody.
            problems.append(f"{key}: {msg}")
        else:
            problems.append(f"{key}: {msg} (got {echo(given)})")
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
