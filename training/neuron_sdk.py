"""Neuron SDK facts shared by the training backends, the inf2 export and the pipeline definition.

Light on purpose (no torch, no SDK import): ``pipelines.definition.builder`` imports it, and asking
whether the SDK is installed must not import it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from training.errors import UserError

# Recommended by the Neuron docs for transformer training; --retry_failed_compilation makes a
# transient compiler failure (e.g. host OOM during parallel compile) retry instead of failing the job.
NEURON_CC_FLAGS = "--model-type transformer --retry_failed_compilation"
# glibc's per-thread arenas bloat host memory with many XLA threads; 64 is the Neuron guidance.
MALLOC_ARENA_MAX = "64"

# What each job needs of the SDK: training runs torch-neuronx under optimum-neuron; the inf2 export
# runs optimum-neuron's NxD backend (no Neuron device, just the compiler).
TRAINING_SDK = ("torch_neuronx", "optimum.neuron")
EXPORT_SDK = ("optimum.neuron", "neuronx_distributed")


def neuron_sdk_available(modules: Sequence[str] = TRAINING_SDK) -> bool:
    """True only where the real SDK is importable (the PyPI placeholders are never installed)."""
    # find_spec("optimum.neuron") imports the parent package, so check `optimum` exists first.
    if importlib.util.find_spec("optimum") is None:
        return False
    return all(importlib.util.find_spec(m) is not None for m in modules)


# ---- which model families the Neuron jobs take -------------------------------------------------------

# optimum-neuron 0.4.5 looks a model's class up by config.json's model_type and fails deep inside the job
# ("Model type X is not supported for task text-generation in neuron in training mode") when it has none.
# Registered for training: llama, granite, qwen3 (optimum/neuron/models/training/auto_models.py, v0.4.5:
# register_neuron_model_for_training("qwen3", "text-generation")(Qwen3ForCausalLM)). Registered for
# inference: granite, llama, llama4_text, mixtral, phi3, qwen2, qwen3, qwen3_moe, smollm3
# (optimum/neuron/models/inference/auto_models.py, v0.4.5: @register_neuron_model_for_inference("qwen3",
# "text-generation")). A model is trained and then exported, so it needs both; of the three in both, this
# project supports the two whose LoRA targets, chat templates and packing it tests: Llama (SmolLM2 is one)
# and Qwen3. model_type -> the causal-LM class transformers and optimum-neuron use for it.
SUPPORTED_MODEL_TYPES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
NEURON_TRAINING_MODEL_TYPES = ("granite", "llama", "qwen3")
NEURON_INFERENCE_MODEL_TYPES = (
    "granite",
    "llama",
    "llama4_text",
    "mixtral",
    "phi3",
    "qwen2",
    "qwen3",
    "qwen3_moe",
    "smollm3",
)


def read_model_config(model_dir: Path) -> dict[str, Any] | None:
    """config.json of a model folder; None where ``model_dir`` is no folder with one (a Hub id, a GGUF
    file): the model loader reports those itself."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON model config ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object (a model config), found {type(config).__name__}")
    return config


def check_model_family(
    config: Mapping[str, Any], where: str, purpose: Literal["training", "inference"]
) -> str:
    """The model's class name when this project takes its family on Neuron; a UserError naming the
    model_type found and the families supported otherwise. ``where`` names the config file."""
    model_type = config.get("model_type")
    supported = ", ".join(f"{cls} (model_type {kind})" for kind, cls in SUPPORTED_MODEL_TYPES.items())
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"{where}: model_type {model_type!r} is not supported for {purpose} on Neuron; this project "
            f"supports {supported}, which optimum-neuron 0.4.5 implements for both training on Trainium and "
            "inference on Inferentia. Pick a base model of one of these families"
        )
    if purpose == "training" and model_type == "qwen3" and config.get("use_sliding_window"):
        # optimum/neuron/models/training/qwen3/modeling_qwen3.py (v0.4.5), Qwen3Model.__init__: "Sliding
        # window attention is not supported for Qwen3 on Neuron" (raised when sliding_window is set, which
        # transformers' Qwen3Config does only with use_sliding_window).
        raise UserError(
            f"{where}: use_sliding_window is true, and optimum-neuron 0.4.5 trains Qwen3 only with full "
            "attention; set use_sliding_window to false in that config.json (Qwen3's released checkpoints do)"
        )
    return SUPPORTED_MODEL_TYPES[model_type]
