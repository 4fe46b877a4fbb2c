"""The Neuron backend's edges. The SDK path itself is never executed here (no Neuron hardware or SDK)."""

import pytest

from training.backends import choose_backend
from training.backends.neuron_backend import launch_command, neuron_env, neuron_sdk_available, processes_per_node
from training.errors import UserError
from training.hyperparameters import TrainHyperparameters


def test_sdk_is_not_detected_here():
    assert neuron_sdk_available() is False


def test_auto_picks_torch_without_sdk_and_neuron_without_sdk_is_a_clear_error():
    assert choose_backend("auto", neuron_sdk=False, neuron_devices=True) == "torch"
    assert choose_backend("auto", neuron_sdk=True, neuron_devices=True) == "neuron"
    with pytest.raises(UserError, match="backend=neuron but the Neuron SDK .* is not installed"):
        choose_backend("neuron", neuron_sdk=False, neuron_devices=False)


def test_launch_command_uses_sm_num_neurons_and_precompile_wrapper():
    env = {"SM_NUM_NEURONS": "32"}
    cmd = launch_command(TrainHyperparameters(tensor_parallel_size=8), env)
    assert cmd[:3] == ["torchrun", "--nproc_per_node=32", "--nnodes=1"]
    assert cmd[-4:] == ["-m", "containers.entrypoint", "train", "--neuron-worker"]
    pre = launch_command(TrainHyperparameters(precompile=True), {"SM_NUM_NEURONS": "2"})
    assert pre[0] == "neuron_parallel_compile" and pre[1] == "torchrun"


def test_launch_errors_name_the_fix():
    with pytest.raises(UserError, match="SM_NUM_NEURONS is not set"):
        processes_per_node({})
    with pytest.raises(UserError, match="SM_NUM_NEURONS='two' is not an integer"):
        processes_per_node({"SM_NUM_NEURONS": "two"})
    with pytest.raises(UserError, match="tensor_parallel_size=3 does not divide the 32 Neuron cores"):
        launch_command(TrainHyperparameters(tensor_parallel_size=3), {"SM_NUM_NEURONS": "32"})


def test_neuron_env_sets_compiler_flags_and_keeps_user_values():
    env = neuron_env(TrainHyperparameters(), {"NEURON_COMPILE_CACHE_URL": "s3://b/cache", "MALLOC_ARENA_MAX": "8"})
    assert env["NEURON_CC_FLAGS"] == "--model-type transformer --retry_failed_compilation"
    assert env["MALLOC_ARENA_MAX"] == "8"
    assert env["NEURON_COMPILE_CACHE_URL"] == "s3://b/cache"
