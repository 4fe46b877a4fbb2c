"""Training backends behind one small interface: ``run(job) -> report``.

* ``torch``: CPU or CUDA, in this process (``training/backends/torch_backend.py``).
* ``neuron``: Trainium via optimum-neuron, launched with torchrun (``training/backends/neuron_backend.py``).
  Not executed in CI: no Neuron hardware or SDK exists there.
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
