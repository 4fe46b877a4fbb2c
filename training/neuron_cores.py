"""How many NeuronCores this machine has, counted on the machine: one torchrun worker per core.

SageMaker does not say: ``SM_NUM_NEURONS`` comes from the SageMaker training toolkit, which our image
does not run (``containers/contract.py``). So the count comes from the Neuron tools or the devices:

1. ``neuron-ls --json-output``: a JSON list with one object per Neuron device, whose ``nc_count`` is
   its NeuronCores (Neuron docs, tools/neuron-sys-tools/neuron-ls.rst, option ``--json-output``; on a
   trn1.2xlarge it prints one device with ``"nc_count": 2``).
2. Otherwise the ``/dev/neuron<N>`` device files times the cores per device of the instance family:
   2 NeuronCore-v2 per Trainium device on trn1 (Neuron docs, about-neuron/arch/neuron-hardware/trn1-arch:
   trn1.2xlarge has 1 device and 2 cores, trn1.32xlarge 16 devices and 32 cores), 8 NeuronCore-v3 per
   Trainium2 device on trn2 (trn2-arch).

On trn2 a worker drives a *logical* core of ``NEURON_LOGICAL_NC_CONFIG`` physical ones, 2 by default
(Neuron docs, about-neuron/arch/neuron-features/logical-neuroncore-config), so the workers are the
physical cores divided by it. Neither source answering is an error that names both, never a guess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from training.errors import UserError

# Physical NeuronCores per Neuron device, by instance family (see the module docstring for sources).
CORES_PER_DEVICE = {"trn1": 2, "trn1n": 2, "trn2": 8}
# Physical cores per logical core (LNC) by default; trn2 only (logical-neuroncore-config).
DEFAULT_LNC = {"trn2": 2}


def instance_family(instance_type: str) -> str:
    """``ml.trn1.32xlarge`` -> ``trn1``."""
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else parts[0]


def logical_core_size(family: str, env: Mapping[str, str]) -> int:
    if family not in DEFAULT_LNC:
        return 1
    raw = env.get("NEURON_LOGICAL_NC_CONFIG", str(DEFAULT_LNC[family]))
    if raw not in ("1", "2"):
        raise UserError(
            f"NEURON_LOGICAL_NC_CONFIG={raw!r}: Trn2 takes 1 or 2 physical cores per logical core"
        )
    return int(raw)


def cores_from_neuron_ls() -> int | None:
    """The physical cores ``neuron-ls --json-output`` reports; None when the tool is absent or says nothing."""
    exe = shutil.which("neuron-ls")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--json-output"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        devices = json.loads(out.stdout)
        total = sum(int(device["nc_count"]) for device in devices)
    except (ValueError, TypeError, KeyError):
        raise UserError(
            f"`neuron-ls --json-output` printed something other than a list of devices with nc_count: "
            f"{out.stdout[:200]!r}"
        ) from None
    return total or None


def neuron_device_files(dev: Path = Path("/dev")) -> list[Path]:
    """The Neuron device files, ``/dev/neuron<N>``."""
    return [p for p in dev.glob("neuron*") if p.name[len("neuron") :].isdigit()]


def cores_from_devices(family: str, dev: Path = Path("/dev")) -> int | None:
    devices = neuron_device_files(dev)
    if not devices or family not in CORES_PER_DEVICE:
        return None
    return len(devices) * CORES_PER_DEVICE[family]


def workers_per_node(
    instance_type: str,
    env: Mapping[str, str],
    dev: Path = Path("/dev"),
) -> int:
    """One torchrun worker per (logical) NeuronCore of this machine."""
    family = instance_family(instance_type) if instance_type else ""
    physical = cores_from_neuron_ls()
    if physical is None:
        physical = cores_from_devices(family, dev)
    if physical is None:
        raise UserError(
            "no Neuron device found: `neuron-ls` is not on PATH or lists no devices, and "
            f"{dev}/neuron* has no device files"
            + (f" (instance type {instance_type!r})" if instance_type else "")
            + ". The neuron backend needs a trn1/trn2 instance with the Neuron driver and the Neuron training "
            "image; set backend=torch (or auto) to train on CPU or GPU instead"
        )
    lnc = logical_core_size(family, env)
    if physical % lnc:
        raise UserError(f"{physical} NeuronCores do not group into logical cores of {lnc}")
    return physical // lnc
