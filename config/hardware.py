"""What each instance type brings to the planner (config/plan.py): Neuron cores, HBM per core, peak
bf16 FLOPs, host RAM. Every figure is copied from the page named beside it; a type that is not here is
one the planner cannot judge, and says so rather than guessing.

Sources (AWS Neuron documentation, aws-neuron/aws-neuron-sdk at 81ce03a, and the AWS EC2 pages):

* Trainium (trn1) and Inferentia2 (inf2) devices each hold 2 NeuronCore-v2 and 32 GiB of HBM, and deliver
  190 BF16 TFLOPS per device (the cores and TFLOPS live in training/neuron_peaks.py, with these sources): about-neuron/arch/neuron-hardware/trainium.rst and inferentia2.rst
  (https://awsdocs-neuron.readthedocs-hosted.com/en/latest/general/arch/neuron-hardware/trainium.html,
  .../inferentia2.html; "32 GiB of device memory", "Two NeuronCore-v2 ... 190 FP16/BF16/cFP8/TF32 TFLOPS").
  So 16 GiB and 95 TFLOPS per NeuronCore.
* Devices and host memory per size: trn1-arch.rst (trn1.2xlarge 1 device and 32 GiB host memory;
  trn1.32xlarge and trn1n.32xlarge 16 devices, 512 GiB) and inf2-arch.rst (inf2.xlarge 1 device, 16 GiB;
  inf2.8xlarge 1, 128 GiB; inf2.24xlarge 6, 384 GiB; inf2.48xlarge 12, 768 GiB).
* Trainium2 (trn2): 8 NeuronCore-v3 and 96 GiB of HBM per device, 667 BF16 TFLOPS per device
  (about-neuron/arch/neuron-hardware/trainium2.rst); trn2.48xlarge has 16 devices and 2,048 GiB of host
  memory (trn2-arch.rst). The logical-core setting decides what one worker sees
  (about-neuron/arch/neuron-features/logical-neuroncore-config.rst): LNC=2, the default, pairs two physical
  cores into one logical core, 64 per trn2.48xlarge, each with one 24 GB HBM bank ("Trainium2 devices
  contain four 24GB HBM banks. Each bank is shared by two physical NeuronCore-v3"); LNC=1 gives 128 cores
  whose pairs share a bank, so 12 GiB each. The training best-practices page says the same of LNC=2:
  "64 ranks per instance and approximately 24 GiB of HBM per rank, before runtime overhead"
  (https://awsdocs-neuron.readthedocs-hosted.com/en/latest/training/best-practices.html).
* CPU hosts (the compile step's processing instance): the EC2 general purpose instance table, m5 rows
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/general-purpose-instances.html: m5.large 8 GiB ...
  m5.24xlarge 384 GiB). Other families are not listed: their RAM is "unknown", and the plan says it did not
  check it.

* Tensor-parallel degrees the Neuron runtime supports for serving (``SERVING_TP_DEGREES``): the NxD Inference
  feature guide, libraries/nxd-inference/developer_guides/feature-guide.rst L154-158 (the same list in
  libraries/nxd-inference/api-guides/api-guide.rst L139-145): "Trn2: 1, 2, 4, 8, 16, 32, and 64 (with LNC2);
  Inf2: 1, 2, 4, 8, and 24; Trn1: 1, 2, 8, 16, and 32". The older about-neuron/transformers/
  generative-llm-inference-with-neuron.rst L237-238 gives Inf2 2, 4, 8, 12 and 24 instead; we take the
  NxD Inference list, the one for the backend optimum-neuron 0.4.5 adapts (its models/inference/backend/
  config.py says "Adapted from ... neuronx-distributed-inference"), which leaves out 12 on inf2.24xlarge.
  optimum-neuron itself only checks TP against the cores it sees (optimum/neuron/vllm/model_loader.py
  L70-76), so nothing stops a degree outside the list before the device: the planner refuses it, since
  the runtime is documented not to support it. Training has no such list: no Neuron or optimum-neuron page restricts the training TP
  beyond dividing the cores and the heads (optimum-neuron 0.4.5 tests TP 2, 8 and 32 on trn1,
  tests/training/test_overfit.py L229 and L271-273, and publishes TP 4 on trn2, examples/training/llama/
  finetune_llama.sh L23), so config/plan.py applies this list to serving only.

Runtime overhead (HBM the Neuron runtime keeps for itself) is not published as a figure; the planner
does not model it, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.neuron_cores import DEFAULT_LNC
from training.neuron_peaks import BF16_TFLOPS_PER_DEVICE, PHYSICAL_CORES_PER_DEVICE

GIB = 1024**3


@dataclass(frozen=True)
class NeuronInstance:
    """A Neuron instance type as the planner sees it, at one logical-core setting."""

    instance_type: str
    family: str  # trn1, trn1n, trn2, inf2
    devices: int
    physical_cores_per_device: int
    hbm_gib_per_device: int
    bf16_tflops_per_device: float
    host_gib: int
    logical_core_size: int = 1  # physical cores per logical core: NEURON_LOGICAL_NC_CONFIG on trn2

    @property
    def cores(self) -> int:
        """The NeuronCores a worker (and a tensor-parallel rank) is placed on."""
        return self.devices * self.physical_cores_per_device // self.logical_core_size

    @property
    def hbm_bytes_per_core(self) -> int:
        return self.hbm_gib_per_device * GIB * self.devices // self.cores

    @property
    def peak_flops_per_core(self) -> float:
        return self.bf16_tflops_per_device * 1e12 * self.devices / self.cores


# HBM per device: 32 GiB per Trainium / Inferentia2 device (trainium.rst, inferentia2.rst), 96 GiB per
# Trainium2 device (trainium2.rst). Cores and peak BF16 TFLOPS per device: training/neuron_peaks.py, the one
# copy of those figures (the neuron backend's MFU reads them too).
_HBM_GIB_PER_DEVICE = {"trn1": 32, "trn1n": 32, "inf2": 32, "trn2": 96}

# (family, devices, host GiB) per instance type, from trn1-arch.rst, inf2-arch.rst and trn2-arch.rst.
_NEURON_TYPES: dict[str, tuple[str, int, int]] = {
    "ml.trn1.2xlarge": ("trn1", 1, 32),
    "ml.trn1.32xlarge": ("trn1", 16, 512),
    "ml.trn1n.32xlarge": ("trn1n", 16, 512),
    "ml.trn2.48xlarge": ("trn2", 16, 2048),
    "ml.inf2.xlarge": ("inf2", 1, 16),
    "ml.inf2.8xlarge": ("inf2", 1, 128),
    "ml.inf2.24xlarge": ("inf2", 6, 384),
    "ml.inf2.48xlarge": ("inf2", 12, 768),
}

# Serving TP degrees by instance family (module docstring: NxD Inference feature-guide.rst L154-158). trn1n has
# trn1's Trainium chips (trn1-arch.rst, "Trn1/Trn1n Architecture"), so it takes trn1's list; trn2's is for LNC=2, the only
# setting optimum-neuron 0.4.5 supports (optimum/neuron/utils/system.py L54-61).
SERVING_TP_DEGREES: dict[str, tuple[int, ...]] = {
    "inf2": (1, 2, 4, 8, 24),
    "trn1": (1, 2, 8, 16, 32),
    "trn1n": (1, 2, 8, 16, 32),
    "trn2": (1, 2, 4, 8, 16, 32, 64),
}

# Host RAM of CPU processing types (EC2 general purpose instance table, m5 rows).
CPU_HOST_GIB: dict[str, int] = {
    "ml.m5.large": 8,
    "ml.m5.xlarge": 16,
    "ml.m5.2xlarge": 32,
    "ml.m5.4xlarge": 64,
    "ml.m5.12xlarge": 192,
    "ml.m5.24xlarge": 384,
}


def neuron_instance(instance_type: str, logical_core_size: int | None = None) -> NeuronInstance | None:
    """The Neuron instance, or None for a type the planner has no published figures for.

    ``logical_core_size`` applies to trn2 only; None takes its default (2, logical-neuroncore-config)."""
    known = _NEURON_TYPES.get(instance_type)
    if known is None:
        return None
    family, devices, host = known
    lnc = (logical_core_size or DEFAULT_LNC[family]) if family in DEFAULT_LNC else 1
    return NeuronInstance(
        instance_type,
        family,
        devices,
        physical_cores_per_device=PHYSICAL_CORES_PER_DEVICE[family],
        hbm_gib_per_device=_HBM_GIB_PER_DEVICE[family],
        bf16_tflops_per_device=BF16_TFLOPS_PER_DEVICE[family],
        host_gib=host,
        logical_core_size=lnc,
    )


def neuron_types(family_prefix: str) -> list[NeuronInstance]:
    """The known types of a family (``ml.inf2.``, ``ml.trn1.``), fewest cores first."""
    found = [neuron_instance(t) for t in _NEURON_TYPES if t.startswith(family_prefix)]
    return sorted((i for i in found if i is not None), key=lambda i: (i.cores, i.host_gib))


def host_gib(instance_type: str) -> int | None:
    """Host RAM of any type the planner knows: a CPU processing type or a Neuron instance."""
    if instance_type in CPU_HOST_GIB:
        return CPU_HOST_GIB[instance_type]
    known = _NEURON_TYPES.get(instance_type)
    return known[2] if known else None


def serving_tp_degrees(inst: NeuronInstance) -> tuple[int, ...]:
    """The serving TP degrees the Neuron runtime supports on this instance: its family's list, up to its cores."""
    return tuple(tp for tp in SERVING_TP_DEGREES[inst.family] if tp <= inst.cores)


def training_tp_degrees(inst: NeuronInstance) -> tuple[int, ...]:
    """The training TP degrees this instance takes: those that divide its cores (no published list narrows
    them further; see the module docstring)."""
    return tuple(tp for tp in range(1, inst.cores + 1) if inst.cores % tp == 0)
