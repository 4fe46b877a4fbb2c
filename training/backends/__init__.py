"""Training backends behind one small interface: ``run(job) -> report``.

* ``torch``: CPU or CUDA, in this process (``training/backends/torch_backend.py``).
* ``neuron``: Trainium via optimum-neuron, launched with torchrun (``training/backends/neuron_backend.py``).
  Not executed in CI: no Neuron hardware or SDK exists there.

Both check the LoRA target modules against the model the same way (``resolve_lora_targets``) before
any training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.errors import UserError
from training.job import TrainJob
from training.neuron_cores import neuron_device_files

Runner = Callable[[TrainJob], dict[str, Any]]


def neuron_devices_present(dev: Path = Path("/dev")) -> bool:
    return bool(neuron_device_files(dev))


def choose_backend(choice: str, neuron_sdk: bool, neuron_devices: bool) -> str:
    """``auto`` means neuron when both the SDK and a Neuron device are here, else torch."""
    if choice == "auto":
        return "neuron" if (neuron_sdk and neuron_devices) else "torch"
    if choice == "neuron" and not neuron_sdk:
        raise UserError(
            "backend=neuron but the Neuron SDK (optimum-neuron, torch-neuronx) is not installed here; "
            "run on the Neuron training image on a trn1/trn2 instance, or set backend=torch (or auto)"
        )
    return choice


def get_runner(backend: str) -> Runner:
    if backend == "neuron":
        from training.backends import neuron_backend

        return neuron_backend.run
    from training.backends import torch_backend

    return torch_backend.run


def _matches(module_name: str, target: str) -> bool:
    """peft's rule for a list of target names (``check_target_module_exists`` in peft 0.17): the module's
    full name, or its last dotted parts."""
    return module_name == target or module_name.endswith(f".{target}")


def resolve_lora_targets(model: Any, targets: list[str]) -> dict[str, list[str]]:
    """The layers each of ``targets`` adapts, by module name; each target must name at least one.

    Llama and Qwen3 share the projection names (q/k/v/o_proj, gate/up/down_proj); Qwen3 adds the norms
    q_norm/k_norm. peft fails only when no target matches anything, so a misspelt name beside correct
    ones (``gate_prj``) would train without that layer and say nothing, and it refuses a norm with a
    message that does not say which target was wrong. Checked here, before training, on either backend.

    Linear layers and the token embedding (``embed_tokens``) are adaptable: peft has a LoRA layer for
    ``nn.Embedding`` (peft 0.17 peft/tuners/lora/layer.py, class Embedding), and the optimum-neuron Llama
    fine-tuning example targets embed_tokens beside the projections (optimum-neuron v0.4.5
    examples/training/llama/finetune_llama.py L70-77, docs/research/issue16-neuron-facts.md 4.1);
    training/flops.py and config/plan.py count it.
    """
    import torch

    arch = type(model).__name__
    modules = dict(model.named_modules())
    adaptable = (torch.nn.Linear, torch.nn.Embedding)
    linear = _leaf_names(modules, torch.nn.Linear)
    embeddings = _leaf_names(modules, torch.nn.Embedding)
    resolved: dict[str, list[str]] = {}
    problems = []
    for target in targets:
        found = [n for n in modules if n and _matches(n, target)]
        kinds = sorted({type(modules[n]).__name__ for n in found if not isinstance(modules[n], adaptable)})
        if not found:
            problems.append(f"{arch} has no module named {target}")
        elif kinds:
            problems.append(f"{target} is a {', '.join(kinds)} in {arch}, not a linear or embedding layer")
        else:
            resolved[target] = found
    if problems:
        raise UserError(
            f"lora_target_modules={targets} do not match this model ({'; '.join(problems)}); its linear layers "
            f"are: {', '.join(linear)}, and its embedding: {', '.join(embeddings)}. Set "
            "training.lora_target_modules to some of those"
        )
    _refuse_tied_layers(model, targets, resolved)
    return resolved


def _leaf_names(modules: dict[str, Any], kind: type) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(m, kind)})


def _refuse_tied_layers(model: Any, targets: list[str], resolved: dict[str, list[str]]) -> None:
    """Merging a LoRA into the output layer or the input embeddings when the two share one weight
    (SmolLM2 and the small Qwen3 checkpoints set tie_word_embeddings) adds the update to that one
    weight, so the merged model's other layer changes too. peft only warns; the merged model would be
    silently wrong."""
    output = model.get_output_embeddings()
    embedding = model.get_input_embeddings()
    if output is None or output.weight is not embedding.weight:
        return
    modules = dict(model.named_modules())
    for target, names in resolved.items():
        if any(modules[n] is output for n in names):
            this, other = "the output layer", "the input embeddings"
        elif any(modules[n] is embedding for n in names):
            this, other = "the input embedding", "the output layer (lm_head)"
        else:
            continue
        raise UserError(
            f"lora_target_modules={targets}: {target} is {this} of this {type(model).__name__}, which shares "
            f"its weights with {other} (tie_word_embeddings=true), so merging a LoRA on it would change "
            f"{other} as well; leave {target} out of training.lora_target_modules"
        )
