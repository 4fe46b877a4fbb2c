"""The allowed range of every number that shapes a paid run, in one place.

Three readers check values against this table, so a value refused in one is refused in all: the project
config (``config/schema.py``, ``training.*`` and ``pipeline.*``), the pipeline parameters that a run may
override (``pipelines/definition/parameters.py``, both ``mlops pipeline start`` and ``mlops run --local
--param``), and the training container's hyperparameters (``TrainHyperparameters`` below the entrypoint).
This module sits in ``training`` because that is the lowest layer the other two may import.

A bound's message says what is allowed and why, or what to do; the reader adds the key and the value it
was given. Advice holds no semicolon: the CLI joins several problems into one line with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidatorFunctionWrapHandler, WrapValidator


@dataclass(frozen=True)
class Bound:
    """A closed range ``[low, high]`` of integers or finite floats; ``low_open`` excludes ``low`` itself."""

    low: float
    high: float
    integer: bool
    advice: str
    low_open: bool = False

    def describe(self) -> str:
        """The range in words, e.g. ``an integer from 1 to 1000000``."""
        if self.integer:
            return f"an integer from {int(self.low)} to {int(self.high)}"
        lower = f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        return f"a finite number {lower} and at most {self.high:g}"

    def problem(self, value: Any) -> str | None:
        """What is wrong with an already-typed value, or None when it is in range."""
        if isinstance(value, bool):
            # bool is an int subclass: `max_steps: true` would otherwise run one step.
            return f"must be {self.describe()}, not a true/false value ({self.advice})"
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return self.requirement()
        too_low = value <= self.low if self.low_open else value < self.low
        return self.requirement() if too_low or value > self.high else None

    def requirement(self) -> str:
        """The message for a value outside the range: what is allowed, and why or what to do."""
        return f"must be {self.describe()} ({self.advice})"

    def validate(self, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Pydantic wrap validator: refuse a YAML/JSON boolean before pydantic's lax mode turns it into 1,
        let pydantic parse the type (the container's hyperparameters arrive as strings), then check range."""
        if isinstance(value, bool):
            raise ValueError(self.problem(value))
        typed = handler(value)
        problem = self.problem(typed)
        if problem:
            raise ValueError(problem)
        return typed


_LARGE = "the ceiling catches a typo before a paid run, raise it in training/bounds.py if you need more"

# The longest packed block a config may ask for; training/data.py sizes its line limit from it.
MAX_SEQ_LENGTH = 32768

BOUNDS: dict[str, Bound] = {
    # Training hyperparameters (config `training.<name>`, the container's hyperparameters.json).
    "max_steps": Bound(1, 1_000_000, True, "a fine-tune runs at least one optimizer step, " + _LARGE),
    "learning_rate": Bound(
        0,
        0.1,
        False,
        "LoRA fine-tunes with AdamW use about 1e-5 to 1e-3, a larger rate diverges at once",
        low_open=True,
    ),
    "warmup_steps": Bound(0, 1_000_000, True, "0 turns warmup off, and it must stay below max_steps"),
    "weight_decay": Bound(
        0, 1, False, "AdamW decoupled weight decay is a fraction of the weight, 0 turns it off"
    ),
    "max_grad_norm": Bound(
        0, 1_000_000, False, "the clipping norm must be positive, 1.0 is usual", low_open=True
    ),
    "per_device_train_batch_size": Bound(
        1, 1024, True, "packed blocks per NeuronCore per micro-step, " + _LARGE
    ),
    "gradient_accumulation_steps": Bound(1, 4096, True, "micro-steps per optimizer step, " + _LARGE),
    "max_seq_length": Bound(
        16, MAX_SEQ_LENGTH, True, "the packed block length, the one input shape of the model"
    ),
    "lora_r": Bound(1, 1024, True, "ranks of 8 to 64 are usual"),
    "lora_alpha": Bound(1, 4096, True, "the LoRA scale is alpha / r, and alpha = 2 * r is usual"),
    "lora_dropout": Bound(0, 0.99, False, "a dropout probability below 1, 0.05 is usual"),
    "save_steps": Bound(1, 1_000_000, True, "optimizer steps between checkpoints"),
    "save_total_limit": Bound(1, 1000, True, "complete checkpoints kept, at least one to resume from"),
    "logging_steps": Bound(1, 1_000_000, True, "optimizer steps between metric lines"),
    # numpy's legacy seeding (the RNG state the checkpoints carry) takes 0 .. 2**32 - 1.
    "seed": Bound(0, 2**32 - 1, True, "numpy seeds are unsigned 32-bit integers"),
    "num_threads": Bound(0, 1024, True, "0 keeps torch's default thread count"),
    "tensor_parallel_size": Bound(1, 64, True, "NeuronCores that hold one model replica"),
    # Pipeline (config `pipeline.instances.train_count`, parameter TrainInstanceCount).
    "train_instance_count": Bound(1, 64, True, "Trainium instances for the fine-tune, " + _LARGE),
    # Config `pipeline.quality_gate.threshold`, parameter QualityThreshold. exact_match is a fraction in
    # [0, 1] and exact_match_improvement a difference of two fractions (inference/evaluate.py).
    "quality_threshold": Bound(
        -1,
        1,
        False,
        "exact_match is a fraction from 0 to 1, exact_match_improvement a difference from -1 to 1",
    ),
}


def checked(name: str) -> WrapValidator:
    """The pydantic validator that holds a field to ``BOUNDS[name]``: ``Annotated[int, checked("max_steps")]``."""
    return WrapValidator(BOUNDS[name].validate)
