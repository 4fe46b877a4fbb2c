"""Peak dense BF16 FLOP/s of the Neuron devices, per device and per (logical) NeuronCore: the one copy of
these figures, read by the neuron backend's MFU (training/backends/neuron_backend.py) and by the planner
(config/hardware.py imports them from here; training/ cannot import config/).

Sources (AWS Neuron documentation, aws-neuron/aws-neuron-sdk at 81ce03a):

* Trainium (trn1, trn1n): about-neuron/arch/neuron-hardware/trainium.rst, "Two NeuronCore-v2 delivering
  ... 190 FP16/BF16/cFP8/TF32 TFLOPS" per device
  (https://awsdocs-neuron.readthedocs-hosted.com/en/latest/general/arch/neuron-hardware/trainium.html).
* Inferentia2 (inf2): about-neuron/arch/neuron-hardware/inferentia2.rst, "Two NeuronCore-v2 cores,
  delivering ... 190 FP16/BF16/cFP8/TF32 TFLOPS" per device.
* Trainium2 (trn2): about-neuron/arch/neuron-hardware/trainium2.rst, "667 BF16/FP16/TF32 TFLOPS" per
  device of eight NeuronCore-v3. (neuron-core-v3.rst gives 79 BF16 TFLOPS per NeuronCore-v3 Tensor
  Engine, 632 per device; we take the device figure, as optimum-neuron 0.4.5's own MFU does:
  optimum/neuron/trainers/metrics/constants.py, ``667 / 8`` per physical core.)

A logical core of LNC physical cores (trn2: NEURON_LOGICAL_NC_CONFIG, 2 by default, logical-neuroncore-
config.rst) has LNC times one physical core's peak; optimum-neuron 0.4.5 counts it the same way
(optimum/neuron/trainers/metrics/collector.py L142-146: "When using LNC2, one logical core ... maps to two
physical cores. Therefore, the peak TFLOPS per logical core is doubled.").
"""

from __future__ import annotations

from training.neuron_cores import CORES_PER_DEVICE

# Peak dense BF16 TFLOPS of one Neuron device, by instance family (module docstring).
BF16_TFLOPS_PER_DEVICE: dict[str, float] = {"trn1": 190.0, "trn1n": 190.0, "inf2": 190.0, "trn2": 667.0}
# Physical NeuronCores per device: training/neuron_cores.py's table (trn1, trn1n, trn2) plus Inferentia2's
# two NeuronCore-v2 (inferentia2.rst), which training never runs on.
PHYSICAL_CORES_PER_DEVICE: dict[str, int] = {**CORES_PER_DEVICE, "inf2": 2}

PEAK_SOURCE = {
    "trn1": "190 BF16 TFLOPS per Trainium device of 2 NeuronCore-v2 (Neuron docs, trainium.rst)",
    "trn1n": "190 BF16 TFLOPS per Trainium device of 2 NeuronCore-v2 (Neuron docs, trainium.rst)",
    "inf2": "190 BF16 TFLOPS per Inferentia2 device of 2 NeuronCore-v2 (Neuron docs, inferentia2.rst)",
    "trn2": "667 BF16 TFLOPS per Trainium2 device of 8 NeuronCore-v3 (Neuron docs, trainium2.rst)",
}


def bf16_peak_flops_per_core(family: str, logical_core_size: int = 1) -> float | None:
    """Peak BF16 FLOP/s of one (logical) NeuronCore of ``family``; None for a family with no published figure."""
    if family not in BF16_TFLOPS_PER_DEVICE:
        return None
    per_physical = BF16_TFLOPS_PER_DEVICE[family] * 1e12 / PHYSICAL_CORES_PER_DEVICE[family]
    return per_physical * logical_core_size
