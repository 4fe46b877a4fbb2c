"""What a compiled artifact carries and what the vLLM Neuronx container reads from its environment.

Light on purpose (no torch): ``compile`` writes these, ``serve`` and the pipeline definition read them.
"""

from __future__ import annotations

REPORT = "compile_report.json"
SERVING_CONFIG = "serving_config.json"  # the cpu artifact's static limits (``compile --target cpu``)

# The vLLM Neuronx container turns every SM_ON_<NAME>=<value> into ``--<name> <value>``
# (inference/neuron_serve.py says where that comes from).
SM_ON_PREFIX = "SM_ON_"
SM_ON_MODEL = "SM_ON_MODEL"
SM_ON_BATCH_SIZE = "SM_ON_BATCH_SIZE"
SM_ON_SEQUENCE_LENGTH = "SM_ON_SEQUENCE_LENGTH"
SM_ON_TENSOR_PARALLEL_SIZE = "SM_ON_TENSOR_PARALLEL_SIZE"
# The static shapes, in the order they are emitted: after SM_ON_MODEL, before any other SM_ON_*.
SHAPE_KEYS = (SM_ON_BATCH_SIZE, SM_ON_SEQUENCE_LENGTH, SM_ON_TENSOR_PARALLEL_SIZE)
