"""The Neuron backend's edges. The SDK path itself is never executed here (no Neuron hardware or SDK)."""

import pytest
from neuron_stand_ins import neuron_ls_json, stand_in_tool

from training.backends import choose_backend
from training.backends.neuron_backend import launch_command, neuron_env
from training.errors import UserError
from training.hyperparameters import TrainHyperparameters
from training.job import Cluster
from training.neuron_cores import workers_per_node


def test_auto_picks_torch_without_sdk_and_neuron_without_sdk_is_a_clear_error():
    assert choose_backend("auto", neuron_sdk=False, neuron_devices=True) == "torch"
    assert choose_backend("auto", neuron_sdk=True, neuron_devices=True) == "neuron"
    with pytest.raises(UserError, match="backend=neuron but the Neuron SDK .* is not installed"):
        choose_backend("neuron", neuron_sdk=False, neuron_devices=False)


def test_launch_command_on_one_host_and_the_precompile_wrapper():
    cmd = launch_command(TrainHyperparameters(tensor_parallel_size=8), Cluster.single(), 32)
    assert cmd == [
        "torchrun",
        "--nproc_per_node=32",
        "--nnodes=1",
        "-m",
        "containers.entrypoint",
        "train",
        "--neuron-worker",
    ]
    pre = launch_command(TrainHyperparameters(precompile=True), Cluster.single(), 2)
    assert pre[0] == "neuron_parallel_compile" and pre[1] == "torchrun"


def test_launch_command_on_two_hosts_agrees_on_ranks_and_master():
    hosts = ("algo-2", "algo-1")  # SageMaker's order need not be sorted; every node sorts the same way
    commands = [
        launch_command(TrainHyperparameters(), Cluster(hosts, current, "ml.trn1.32xlarge"), 32)
        for current in hosts
    ]
    for cmd, rank in zip(commands, (1, 0), strict=True):
        assert cmd[:6] == [
            "torchrun",
            "--nproc_per_node=32",
            "--nnodes=2",
            f"--node_rank={rank}",
            "--master_addr=algo-1",
            "--master_port=7777",
        ]


def test_tensor_parallel_must_divide_the_cores():
    with pytest.raises(UserError, match="tensor_parallel_size=3 does not divide the 32 Neuron cores"):
        launch_command(TrainHyperparameters(tensor_parallel_size=3), Cluster.single(), 32)


def test_cores_are_counted_by_neuron_ls(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    stand_in_tool(tools, "neuron-ls", f"echo '{neuron_ls_json(16)}'\n")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    assert workers_per_node("ml.trn1.32xlarge", {}, dev=tmp_path / "no-dev") == 32
    # trn2: 8 physical cores per device, grouped 2 per logical core unless NEURON_LOGICAL_NC_CONFIG=1.
    stand_in_tool(tools, "neuron-ls", f"echo '{neuron_ls_json(16, nc_count=8)}'\n")
    assert workers_per_node("ml.trn2.48xlarge", {}, dev=tmp_path / "no-dev") == 64
    assert workers_per_node("ml.trn2.48xlarge", {"NEURON_LOGICAL_NC_CONFIG": "1"}, dev=tmp_path) == 128


def test_without_neuron_ls_the_devices_times_cores_per_device_count(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    dev = tmp_path / "dev"
    dev.mkdir()
    for i in range(16):
        (dev / f"neuron{i}").touch()
    (dev / "neuron_monitor").touch()  # not a device
    assert workers_per_node("ml.trn1.32xlarge", {}, dev=dev) == 32


def test_no_tool_and_no_device_is_an_error_naming_both(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(UserError, match=r"no Neuron device found: `neuron-ls` is not on PATH.*neuron\*"):
        workers_per_node("ml.trn1.2xlarge", {}, dev=tmp_path)


def test_garbage_from_neuron_ls_is_named(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    stand_in_tool(tools, "neuron-ls", "echo 'not json'\n")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    with pytest.raises(UserError, match="neuron-ls --json-output. printed something other"):
        workers_per_node("ml.trn1.2xlarge", {}, dev=tmp_path)


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
    monkeypatch.setattr(neuron_backend, "workers_per_node", lambda instance_type, env: 2)
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


def test_a_bad_logical_core_setting_is_named(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    stand_in_tool(tools, "neuron-ls", f"echo '{neuron_ls_json(16, nc_count=8)}'\n")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    with pytest.raises(UserError, match="NEURON_LOGICAL_NC_CONFIG='4': Trn2 takes 1 or 2"):
        workers_per_node("ml.trn2.48xlarge", {"NEURON_LOGICAL_NC_CONFIG": "4"}, dev=tmp_path)


# --- MFU against the published peak (training/neuron_peaks.py) ------------------------------------------

LLAMA_8B_CONFIG = {  # meta-llama/Llama-3.1-8B-Instruct config.json, the shape fields
    "model_type": "llama",
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}


def _mfu_job(tmp_path, instance_type, config=LLAMA_8B_CONFIG):
    import json

    from training.job import TrainJob

    model = tmp_path / "base"
    model.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (model / "config.json").write_text(json.dumps(config))
    hp = TrainHyperparameters(max_seq_length=2048, lora_r=64, lora_target_modules=["q_proj", "v_proj"])
    return TrainJob(
        hp=hp,
        train_path=tmp_path,
        validation_path=None,
        model_source=str(model),
        gguf_file=None,
        model_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "ckpt",
        cluster=Cluster.single(instance_type),
    )


@pytest.mark.parametrize(
    ("instance_type", "env", "world", "tflops_per_core"),
    [
        ("ml.trn1.32xlarge", {}, 32, 95.0),  # 190 per Trainium device of 2 cores
        ("ml.trn2.48xlarge", {}, 64, 166.75),  # 667 per Trainium2 device of 8, 2 per logical core
        ("ml.trn2.48xlarge", {"NEURON_LOGICAL_NC_CONFIG": "1"}, 128, 83.375),
    ],
)
def test_neuron_mfu_is_the_planners_flops_over_the_published_peak_of_the_workers(
    tmp_path, instance_type, env, world, tflops_per_core
):
    from training.backends.neuron_backend import neuron_mfu
    from training.flops import decoder_shape, flops_per_token

    job = _mfu_job(tmp_path, instance_type)
    block = neuron_mfu(job, world, 20000.0, env)
    flops = flops_per_token(
        decoder_shape(type("C", (), LLAMA_8B_CONFIG)), 2048, 64, ["q_proj", "v_proj"], False
    ).model_flops
    peak = tflops_per_core * 1e12 * world
    assert block["peak_flops"] == round(peak)
    assert block["model_flops_per_token"] == flops
    assert block["mfu"] == round(20000.0 * flops / peak, 4)
    assert 0 < block["mfu"] < 1
    assert "BF16 TFLOPS" in block["peak_source"] and f"x {world} workers" in block["peak_source"]


def test_neuron_mfu_without_a_published_peak_or_a_config_says_why_instead_of_guessing(tmp_path):
    from training.backends.neuron_backend import neuron_mfu

    block = neuron_mfu(_mfu_job(tmp_path, ""), 2, 100.0, {})
    assert (
        block["mfu"] is None
        and "no published BF16 peak for instance type '(unknown)'" in block["peak_source"]
    )
    block = neuron_mfu(_mfu_job(tmp_path / "x", "ml.trn1.2xlarge", config=None), 2, 100.0, {})
    assert block["mfu"] is None and "no config.json in" in block["peak_source"]


def test_the_planner_and_the_backend_read_one_copy_of_the_peaks():
    from config.hardware import neuron_instance
    from training.neuron_peaks import bf16_peak_flops_per_core

    for instance_type, family in (("ml.trn1.32xlarge", "trn1"), ("ml.inf2.48xlarge", "inf2")):
        inst = neuron_instance(instance_type)
        assert inst is not None and inst.peak_flops_per_core == bf16_peak_flops_per_core(family)
    trn2 = neuron_instance("ml.trn2.48xlarge")
    assert trn2 is not None and trn2.peak_flops_per_core == bf16_peak_flops_per_core("trn2", 2)
    assert bf16_peak_flops_per_core("p5") is None
