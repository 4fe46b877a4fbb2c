"""Neuron SDK facts shared by the training backends, the inf2 export and the pipeline definition.

Light on purpose (no torch, no SDK import): ``pipelines.definition.builder`` imports it, and asking
whether the SDK is installed must not import it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

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
