"""The Neuron backend's edges. The SDK path itself is never executed here (no Neuron hardware or SDK)."""

import pytest

from training.backends import choose_backend
from training.backends.neuron_backend import (
    launch_command,
    neuron_env,
    processes_per_node,
)
from training.errors import UserError
from training.hyperparameters import TrainHyperparameters


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
    env = neuron_env(
        TrainHyperparameters(), {"NEURON_COMPILE_CACHE_URL": "s3://b/cache", "MALLOC_ARENA_MAX": "8"}
    )
    assert env["NEURON_CC_FLAGS"] == "--model-type transformer --retry_failed_compilation"
    assert env["MALLOC_ARENA_MAX"] == "8"
    assert env["NEURON_COMPILE_CACHE_URL"] == "s3://b/cache"


# ---- trainer arguments, collator, failure propagation, adapter placement ---------------------------

# Fields optimum-neuron 0.4.5 adds to TrainingArguments (optimum/neuron/trainers/training_args.py at
# tag v0.4.5) that trl's SFTConfig lacks. The SDK is not installable here, so this is a snapshot.
NEURON_ONLY_FIELDS = {"tensor_parallel_size", "zero_1", "async_save", "recompute_causal_mask", "fuse_qkv"}


def test_sft_config_kwargs_are_known_fields_and_keep_one_shape(tmp_path):
    import dataclasses

    from trl import SFTConfig

    from training.backends.neuron_backend import sft_config_kwargs

    hp = TrainHyperparameters(max_steps=100, tensor_parallel_size=8, zero_1=True, save_steps=25)
    kwargs = sft_config_kwargs(hp, tmp_path, precompile=False, interactive=False)
    known = {f.name for f in dataclasses.fields(SFTConfig)} | NEURON_ONLY_FIELDS
    assert set(kwargs) <= known, set(kwargs) - known
    assert kwargs["max_steps"] == 100 and kwargs["save_strategy"] == "steps" and kwargs["save_steps"] == 25
    assert kwargs["tensor_parallel_size"] == 8 and kwargs["zero_1"] is True and kwargs["bf16"] is True
    assert kwargs["dataloader_drop_last"] is True and kwargs["packing"] is False
    assert kwargs["dataset_kwargs"] == {"skip_prepare_dataset": True}
    assert kwargs["max_length"] == hp.max_seq_length
    # optimum-neuron 0.4.5 does `"use_reentrant" in args.gradient_checkpointing_kwargs`: never None.
    assert isinstance(kwargs["gradient_checkpointing_kwargs"], dict)
    assert sft_config_kwargs(TrainHyperparameters(precision="fp32"), tmp_path, False, False)["bf16"] is False


def test_precompile_runs_few_steps_and_saves_nothing(tmp_path):
    from training.backends.neuron_backend import PRECOMPILE_MAX_STEPS, sft_config_kwargs

    kwargs = sft_config_kwargs(
        TrainHyperparameters(max_steps=500), tmp_path, precompile=True, interactive=False
    )
    assert kwargs["max_steps"] == PRECOMPILE_MAX_STEPS and kwargs["save_strategy"] == "no"
    short = sft_config_kwargs(TrainHyperparameters(max_steps=6, warmup_steps=1), tmp_path, True, False)
    assert short["max_steps"] == 6


def test_collator_stacks_blocks_and_records_shapes():
    from training.backends.neuron_backend import StackBlocks

    collate = StackBlocks()
    rows = [
        {"input_ids": [1, 2, 3, 0], "labels": [-100, 2, 3, -100]},
        {"input_ids": [4, 5, 6, 7], "labels": [-100, -100, 6, 7]},
    ]
    batch = collate(rows)
    assert batch["input_ids"].shape == (2, 4) and batch["labels"][0].tolist() == [-100, 2, 3, -100]
    assert batch["attention_mask"].sum() == 8
    collate(rows)
    assert collate.shapes == {(2, 4)}


def test_worker_user_error_stays_a_user_error(tmp_path):
    from training.backends.neuron_backend import worker_failure

    failure = tmp_path / "failure"
    failure.write_text("train.jsonl:3: messages[1].role is 'bot'; allowed: system, user, assistant\n")
    err = worker_failure(1, failure)
    assert isinstance(err, UserError) and "train.jsonl:3" in str(err)
    failure.write_text("internal error in `train`: RuntimeError: boom\n")
    err = worker_failure(1, failure)
    assert isinstance(err, RuntimeError) and "status 1: internal error" in str(err)
    err = worker_failure(134, tmp_path / "absent")
    assert isinstance(err, RuntimeError) and "status 134; see the log above" in str(err)


def test_run_raises_the_worker_reason(tmp_path, monkeypatch):
    import subprocess

    from training.backends import neuron_backend
    from training.job import TrainJob

    failure = tmp_path / "failure"
    launched = {}

    def fake_run(cmd, env, check):
        launched.update(cmd=cmd, env=env)
        failure.write_text("hyperparameters.json: lora_r must be > 0\n")
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(neuron_backend.subprocess, "run", fake_run)
    monkeypatch.setenv("SM_NUM_NEURONS", "2")
    job = TrainJob(
        hp=TrainHyperparameters(),
        train_path=tmp_path,
        validation_path=None,
        model_source="m",
        gguf_file=None,
        model_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "ckpt",
        failure_file=failure,
    )
    with pytest.raises(UserError, match="lora_r must be > 0"):
        neuron_backend.run(job)
    assert launched["cmd"][0] == "torchrun" and launched["env"]["NEURON_CC_FLAGS"]


def test_adapter_config_is_placed_beside_consolidated_weights(tmp_path):
    from training.backends.neuron_backend import existing_trainer_checkpoints, place_adapter_config

    final, adapter = tmp_path / "final", tmp_path / "adapter"
    final.mkdir()
    adapter.mkdir()
    with pytest.raises(FileNotFoundError, match="did not save the adapter completely"):
        place_adapter_config(final, adapter)
    (final / "adapter_config.json").write_text('{"r": 8}')
    place_adapter_config(final, adapter)
    assert (adapter / "adapter_config.json").read_text() == '{"r": 8}'
    for n in (10, 2, 30):
        (tmp_path / f"checkpoint-{n}").mkdir()
    assert [p.name for p in existing_trainer_checkpoints(tmp_path)] == [
        "checkpoint-2",
        "checkpoint-10",
        "checkpoint-30",
    ]


# ---- the worker's state, testable without the SDK ---------------------------------------------------


def test_worker_reads_rank_world_and_the_graph_extraction_pass():
    from training.backends.neuron_backend import Worker

    assert Worker.from_env(TrainHyperparameters(), {}) == Worker(rank=0, world=1, precompile=False)
    worker = Worker.from_env(TrainHyperparameters(), {"RANK": "3", "WORLD_SIZE": "8"})
    assert (worker.rank, worker.world) == (3, 8)
    # neuron_parallel_compile marks its graph-extraction pass; precompile=true asks for one.
    assert Worker.from_env(TrainHyperparameters(), {"NEURON_EXTRACT_GRAPHS_ONLY": "1"}).precompile
    assert Worker.from_env(TrainHyperparameters(precompile=True), {}).precompile


def test_worker_metrics_estimate_tokens_per_second_between_log_events(monkeypatch):
    import math

    import training.backends.neuron_backend as nb

    lines = []

    class Sink:
        def log(self, step, metrics):
            lines.append((step, metrics))

    clock = iter([10.0, 12.0])
    monkeypatch.setattr(nb.time, "perf_counter", lambda: next(clock))
    metrics = nb.WorkerMetrics(Sink(), tokens_per_step=100.0, padding_fraction=0.25, last=8.0)
    metrics.on_log(4, {"learning_rate": 1e-4})  # no loss: not a training log event
    metrics.on_log(4, {"loss": 2.0, "learning_rate": 1e-4})
    metrics.on_log(5, {"loss": 1.5})
    assert lines[0] == (
        4,
        {"train_loss": 2.0, "learning_rate": 1e-4, "tokens_per_second": 200.0, "padding_fraction": 0.25},
    )
    step, last = lines[1]
    assert step == 5 and last["tokens_per_second"] == 50.0 and math.isnan(last["learning_rate"])
    assert (metrics.loss, metrics.last_step, metrics.train_seconds) == (1.5, 5, 4.0)
    # Other ranks keep no metrics.
    silent = nb.WorkerMetrics(None, tokens_per_step=1.0, padding_fraction=0.0, last=0.0)
    silent.on_log(1, {"loss": 1.0})
    assert silent.last_step == 0
