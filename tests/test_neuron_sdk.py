"""The Neuron SDK facts module: no SDK detected here, and light enough for the pipeline definition."""

import subprocess
import sys
from pathlib import Path

from training.neuron_sdk import EXPORT_SDK, TRAINING_SDK, neuron_sdk_available

ROOT = Path(__file__).resolve().parents[1]


def test_sdk_is_not_detected_here():
    assert neuron_sdk_available() is False
    assert neuron_sdk_available(TRAINING_SDK) is False and neuron_sdk_available(EXPORT_SDK) is False


def test_the_shared_constants_import_without_torch():
    """pipelines.definition.builder imports these; generating the definition must not load torch."""
    code = (
        "import sys, training.neuron_sdk, inference.serving_contract; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
