"""Checkpoints are sealed (size and sha256 per file), their trainer state loads without running code, a bad
one is set aside for the next older one (issue 15, item 4), and one writer at a time owns a checkpoint
folder (issue 15, item 5)."""

import json
import logging
import os
import pickle
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from training import checkpoints
from training.checkpoints import (
    LEASE,
    LEASE_STALE_SECONDS,
    MANIFEST,
    WriterLease,
    checkpoint_folders,
    latest_checkpoint,
    load_newest,
    save_checkpoint,
    sha256,
)
from training.errors import UserError


def _write(folder):
    (folder / "weights.bin").write_bytes(b"\x01" * 64)
    (folder / "trainer_state.pt").write_bytes(b"\x02" * 32)


def test_a_file_changed_after_sealing_is_not_resumed_from(tmp_path):
    save_checkpoint(tmp_path, 5, _write, keep=2)
    newest = save_checkpoint(tmp_path, 10, _write, keep=2)
    assert latest_checkpoint(tmp_path) == (10, newest)
    (newest / "weights.bin").write_bytes(b"\x03" * 64)  # same size, other bytes: only the hash tells
    assert latest_checkpoint(tmp_path)[0] == 5


def test_a_manifest_without_hashes_is_not_trusted(tmp_path):
    folder = save_checkpoint(tmp_path, 5, _write, keep=2)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {rel: entry["size"] for rel, entry in manifest["files"].items()}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert latest_checkpoint(tmp_path) is None


class _Payload:
    """What a forged trainer_state.pt carries: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_forged_trainer_state_is_refused_without_running_its_code(tmp_path, monkeypatch):
    from training.backends import torch_backend

    marker = tmp_path / "pwned"
    folder = tmp_path / "step-0000005"
    (folder / "adapter").mkdir(parents=True)
    torch.save({"optimizer": _Payload(marker)}, folder / "trainer_state.pt")
    monkeypatch.setattr("peft.set_peft_model_state_dict", lambda model, weights: None)
    monkeypatch.setattr("safetensors.torch.load_file", lambda path: {})
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch_backend._load_trainer_state(folder, model=None, optimizer=None, scheduler=None)
    assert not marker.exists()


def test_the_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    from training.backends import torch_backend

    np.random.seed(7)
    torch.save({"rng": torch_backend._rng_state()}, tmp_path / "state.pt")
    expected = np.random.rand(3)
    np.random.seed(99)
    torch_backend._set_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    assert np.array_equal(np.random.rand(3), expected)


# ---- item 4: a bad checkpoint is named, set aside, and the next older one is used -----------------------


def _tiny_parts(**hyperparameters):
    """A 1-layer Llama with LoRA, AdamW and a schedule, as torch_backend.setup builds them."""
    from transformers import LlamaConfig, LlamaForCausalLM, get_scheduler

    from training.backends import torch_backend
    from training.hyperparameters import TrainHyperparameters

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=16,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    hp = TrainHyperparameters(**hyperparameters)
    model = torch_backend.apply_lora(model, SimpleNamespace(hp=hp))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=10)
    return torch_backend.TrainSetup(
        torch.device("cpu"), None, None, None, None, model, trainable, optimizer, scheduler
    )


def _lora_b(parts):
    """The first LoRA B matrix: zeros as initialised, the step number in a saved checkpoint."""
    return next(p for n, p in parts.model.named_parameters() if "lora_B" in n)


def _job(root):
    return SimpleNamespace(checkpoint_dir=root, hp=SimpleNamespace(max_steps=10, save_total_limit=5))


def _save_at(parts, root, step):
    from training.backends import torch_backend

    with torch.no_grad():
        for name, p in parts.model.named_parameters():
            if "lora_" in name:
                p.fill_(float(step))
    torch_backend._save_checkpoint(_job(root), parts, torch_backend.TrainState(step=step))
    return root / f"step-{step:07d}"


def _corrupt_and_reseal(folder, rel, data):
    """A checkpoint written corrupt: bad bytes, and a manifest that vouches for them."""
    (folder / rel).write_bytes(data)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][rel] = {"size": len(data), "sha256": sha256(folder / rel)}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _bad_folders(root):
    return sorted(p for p in root.iterdir() if p.name.startswith(".bad-"))


def test_a_corrupt_newest_trainer_state_falls_back_to_the_older_checkpoint(tmp_path, caplog):
    from training.backends import torch_backend

    parts = _tiny_parts()
    _save_at(parts, tmp_path, 2)
    newest = _save_at(parts, tmp_path, 4)
    _corrupt_and_reseal(newest, "trainer_state.pt", random.Random(0).randbytes(4096))
    with caplog.at_level(logging.INFO):
        state = torch_backend.resume(_job(tmp_path), parts)
    assert state.step == 2 and torch.all(_lora_b(parts) == 2.0)
    assert f"checkpoint {newest} is bad: it does not load: UnpicklingError" in caplog.text
    assert "falling back to the next older one" in caplog.text
    (bad,) = _bad_folders(tmp_path)
    assert bad.name.startswith(".bad-step-0000004-")
    assert "UnpicklingError" in (bad / "WHY.txt").read_text()
    assert [s for s, _ in checkpoint_folders(tmp_path)] == [2]
    # The next restart goes straight to the good one and names nothing bad.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert torch_backend.resume(_job(tmp_path), parts).step == 2
    assert "is bad" not in caplog.text


def test_a_corrupt_adapter_falls_back_to_the_older_checkpoint(tmp_path):
    from training.backends import torch_backend

    parts = _tiny_parts()
    _save_at(parts, tmp_path, 2)
    newest = _save_at(parts, tmp_path, 4)
    _corrupt_and_reseal(newest, "adapter/adapter_model.safetensors", random.Random(0).randbytes(512))
    assert torch_backend.resume(_job(tmp_path), parts).step == 2
    assert "SafetensorError" in (_bad_folders(tmp_path)[0] / "WHY.txt").read_text()


def test_a_sound_checkpoint_of_another_lora_rank_is_refused_not_set_aside(tmp_path):
    """Shapes of another configuration are not corruption: setting every checkpoint aside would
    silently start over. The run stops and says why, and the checkpoints stay."""
    from training.backends import torch_backend

    _save_at(_tiny_parts(lora_r=8, lora_alpha=16), tmp_path, 2)
    with pytest.raises(UserError) as refused:
        torch_backend.resume(_job(tmp_path), _tiny_parts(lora_r=4, lora_alpha=8))
    assert "is intact (it matches its manifest) but does not fit this run" in str(refused.value)
    assert "size mismatch" in str(refused.value) and "lora_r" in str(refused.value)
    assert _bad_folders(tmp_path) == [] and (tmp_path / "step-0000002").is_dir()


def test_a_forged_trainer_state_in_a_resealed_checkpoint_is_set_aside_without_running(tmp_path):
    from training.backends import torch_backend

    parts = _tiny_parts()
    _save_at(parts, tmp_path, 2)
    newest = _save_at(parts, tmp_path, 4)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(marker)}, tmp_path / "forged.pt")
    _corrupt_and_reseal(newest, "trainer_state.pt", (tmp_path / "forged.pt").read_bytes())
    assert torch_backend.resume(_job(tmp_path), parts).step == 2
    assert not marker.exists()
    assert "Weights only load failed" in (_bad_folders(tmp_path)[0] / "WHY.txt").read_text()


def test_with_no_loadable_checkpoint_training_starts_fresh_from_the_initial_state(tmp_path, caplog):
    """The adapter of the only checkpoint loads, then its trainer state fails: the half-applied
    checkpoint must not become the starting point."""
    from training.backends import torch_backend

    parts = _tiny_parts()
    only = _save_at(parts, tmp_path, 4)
    _corrupt_and_reseal(only, "trainer_state.pt", b"\x80\x04garbage")
    fresh = _tiny_parts()
    initial_rng = torch.get_rng_state()
    with caplog.at_level(logging.INFO):
        state = torch_backend.resume(_job(tmp_path), fresh)
    assert state.step == 0 and state.resumed_from is None
    assert torch.all(_lora_b(fresh) == 0.0)  # as initialised, not the checkpoint's 4.0
    assert torch.equal(torch.get_rng_state(), initial_rng)
    assert "starting from step 0. That is safe" in caplog.text
    assert "set aside: .bad-step-0000004-" in caplog.text
    assert (tmp_path / _bad_folders(tmp_path)[0].name / "adapter").is_dir()  # kept for inspection


def test_a_manifest_mismatch_is_named_and_set_aside(tmp_path, caplog):
    save_checkpoint(tmp_path, 5, _write, keep=2)
    newest = save_checkpoint(tmp_path, 10, _write, keep=2)
    (newest / "weights.bin").write_bytes(b"\x03" * 64)
    with caplog.at_level(logging.WARNING):
        found, set_aside = load_newest(tmp_path, lambda f: "loaded", lambda e: False)
    assert found == (5, tmp_path / "step-0000005", "loaded")
    assert (
        f"checkpoint {newest} is bad: weights.bin no longer matches its sha256 in the manifest" in caplog.text
    )
    assert [p.name[:22] for p in set_aside] == [".bad-step-0000010-2026"[:22]]


def test_a_missing_manifest_is_named(tmp_path, caplog):
    newest = save_checkpoint(tmp_path, 10, _write, keep=2)
    (newest / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING):
        assert load_newest(tmp_path, lambda f: "loaded", lambda e: False)[0] is None
    assert "no COMPLETE manifest (written or restored only in part)" in caplog.text


def test_a_read_error_is_not_taken_for_a_bad_checkpoint(tmp_path):
    """An I/O error says nothing about the checkpoint: it propagates and the checkpoint stays."""
    save_checkpoint(tmp_path, 5, _write, keep=2)

    def load(folder):
        raise OSError(5, "Input/output error")

    from training.backends.torch_backend import _is_unreadable

    with pytest.raises(OSError, match="Input/output error"):
        load_newest(tmp_path, load, _is_unreadable)
    assert [s for s, _ in checkpoint_folders(tmp_path)] == [5]
    assert not _bad_folders(tmp_path)


def test_set_aside_checkpoints_are_neither_listed_nor_pruned(tmp_path):
    save_checkpoint(tmp_path, 5, _write, keep=1)
    (tmp_path / "step-0000005" / MANIFEST).unlink()
    load_newest(tmp_path, lambda f: None, lambda e: False)
    for step in (6, 7, 8):
        save_checkpoint(tmp_path, step, _write, keep=1)
    assert [s for s, _ in checkpoint_folders(tmp_path)] == [8]
    assert len(_bad_folders(tmp_path)) == 1


# ---- item 5: two writers on one checkpoint folder -------------------------------------------------------


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tmp_folder(root, step, host, pid, machine, age_seconds=0.0):
    folder = root / f".tmp-step-{step:07d}-{host}-{pid}-{machine}"
    folder.mkdir(parents=True)
    (folder / "half-written.bin").write_bytes(b"x")
    if age_seconds:
        then = time.time() - age_seconds
        os.utime(folder, (then, then))
    return folder


def test_pruning_never_deletes_another_live_writers_temp_folder(tmp_path):
    here = checkpoints._machine_tag()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        others = {
            "live here": _tmp_folder(tmp_path, 9, "h", live.pid, here),
            "dead here": _tmp_folder(tmp_path, 8, "h", _dead_pid(), here),
            "elsewhere": _tmp_folder(tmp_path, 7, "algo-1", 12, "0123abcd"),
            "elsewhere, 2 days old": _tmp_folder(tmp_path, 6, "algo-1", 13, "0123abcd", 48 * 3600),
            "old naming": _tmp_folder(tmp_path, 5, "x", 1, "0" * 8).rename(
                tmp_path / ".tmp-step-0000005-4242"
            ),
        }
        save_checkpoint(tmp_path, 10, _write, keep=2)
    finally:
        live.kill()
        live.wait()
    exists = {what: folder.exists() for what, folder in others.items()}
    assert exists == {
        "live here": True,
        "dead here": False,
        "elsewhere": True,
        "elsewhere, 2 days old": False,
        "old naming": True,  # young: its writer may be alive
    }


_SLOW_WRITER = """
import sys, time
from pathlib import Path
from training.checkpoints import save_checkpoint
root, go = Path(sys.argv[1]), Path(sys.argv[2])
def write(folder):
    (folder / "a.bin").write_bytes(b"a")
    (root / "writing").touch()
    while not go.exists():
        time.sleep(0.01)
    (folder / "b.bin").write_bytes(b"b")
print(save_checkpoint(root, 3, write, keep=5))
"""


def test_a_save_by_one_writer_does_not_break_another_writers_save_in_progress(tmp_path):
    """The reported race: writer A's prune deleted writer B's .tmp-step-* folder mid-write."""
    import training

    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(Path(training.__file__).parents[1]))
    other = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(tmp_path), str(go)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not (tmp_path / "writing").exists():
        assert other.poll() is None and time.time() < deadline, other.communicate()
        time.sleep(0.01)
    save_checkpoint(tmp_path, 10, _write, keep=5)  # prunes while the other writer is mid-write
    go.touch()
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    assert latest_checkpoint(tmp_path)[0] == 10
    assert sorted(p.name for p in (tmp_path / "step-0000003").iterdir()) == ["COMPLETE", "a.bin", "b.bin"]


_T0 = datetime.now(timezone.utc).replace(microsecond=0)


def _lease(root, job, minutes_later=0.0):
    """A lease whose clock stands still at ``minutes_later`` minutes after _T0."""
    start = _T0 + timedelta(minutes=minutes_later)
    return WriterLease(root, job, clock=lambda: start)


def test_a_second_job_is_refused_while_the_first_holds_a_fresh_lease(tmp_path):
    first = _lease(tmp_path, "exec-1-FineTune")
    first.acquire()
    since = first.holder.started_at
    with pytest.raises(UserError) as caught:
        _lease(tmp_path, "exec-2-FineTune", minutes_later=1).acquire()
    message = str(caught.value)
    assert message.startswith(
        f"checkpoint folder {tmp_path} is in use by training job 'exec-1-FineTune' on host "
        f"{first.holder.host!r} (pid {os.getpid()}), writing since {since}; its last heartbeat was 60 s ago."
    )
    assert "Wait for that job to finish (or stop it)" in message
    assert f"If it is no longer running, delete {tmp_path / LEASE}" in message
    assert "the object writer-lease.json under the training step's checkpoint S3 prefix" in message
    assert json.loads((tmp_path / LEASE).read_text())["job"] == "exec-1-FineTune"  # untouched


def test_the_same_job_name_takes_the_lease_over(tmp_path, caplog):
    """A spot restart of a SageMaker job runs under the same name, with its old lease restored from S3."""
    _lease(tmp_path, "pipelines-abc-FineTune").acquire()
    with caplog.at_level(logging.WARNING):
        _lease(tmp_path, "pipelines-abc-FineTune", minutes_later=1).acquire()
    assert "taking over the writer lease" in caplog.text
    assert "it is this same job's earlier run (a spot restart or retry keeps the job's name)" in caplog.text


def test_a_stale_lease_is_taken_over(tmp_path, caplog):
    _lease(tmp_path, "exec-1-FineTune").acquire()
    with caplog.at_level(logging.WARNING):
        _lease(tmp_path, "exec-2-FineTune", minutes_later=LEASE_STALE_SECONDS / 60 + 1).acquire()
    assert "(stale after 600 s)" in caplog.text
    assert json.loads((tmp_path / LEASE).read_text())["job"] == "exec-2-FineTune"


def test_a_lease_whose_process_is_gone_on_this_machine_is_taken_over_at_once(tmp_path, caplog):
    dead = _lease(tmp_path, "exec-1-FineTune")
    dead.acquire()
    record = json.loads((tmp_path / LEASE).read_text())
    (tmp_path / LEASE).write_text(json.dumps({**record, "pid": _dead_pid()}))
    with caplog.at_level(logging.WARNING):
        _lease(tmp_path, "exec-2-FineTune").acquire()
    assert "on this machine is gone" in caplog.text


def test_a_reused_pid_does_not_keep_a_dead_writers_temp_folder_or_lease(tmp_path, caplog):
    """The pid of a writer that is gone can belong to a process that started later: not the writer."""
    here = checkpoints._machine_tag()
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # Written an hour before `later` started: whoever has that pid now did not write it.
        folder = _tmp_folder(tmp_path / "ckpt", 9, "h", later.pid, here, age_seconds=3600)
        save_checkpoint(tmp_path / "ckpt", 10, _write, keep=2)
        assert not folder.exists()

        _lease(tmp_path, "exec-1-FineTune", minutes_later=-60).acquire()
        record = json.loads((tmp_path / LEASE).read_text())
        (tmp_path / LEASE).write_text(json.dumps({**record, "pid": later.pid}))
        with caplog.at_level(logging.WARNING):
            _lease(tmp_path, "exec-2-FineTune", minutes_later=-59).acquire()
        assert f"its process {later.pid} on this machine is gone" in caplog.text
    finally:
        later.kill()
        later.wait()


def test_a_dead_looking_pid_on_another_machine_still_holds_the_lease(tmp_path):
    """SageMaker names every job's first host algo-1: a pid is only checked on the machine that owns it."""
    _lease(tmp_path, "job-a").acquire()
    record = json.loads((tmp_path / LEASE).read_text())
    (tmp_path / LEASE).write_text(json.dumps({**record, "pid": _dead_pid(), "machine": "0123abcd"}))
    with pytest.raises(UserError, match="is in use by training job 'job-a'"):
        _lease(tmp_path, "job-b").acquire()


def test_an_unreadable_lease_is_taken_over(tmp_path, caplog):
    (tmp_path / LEASE).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        _lease(tmp_path, "job-a").acquire()
    assert f"{tmp_path / LEASE} is unreadable (JSONDecodeError" in caplog.text


def test_a_writer_that_lost_its_lease_refuses_to_save(tmp_path):
    first = _lease(tmp_path, "job-a")
    first.acquire()
    _lease(tmp_path, "job-b", minutes_later=LEASE_STALE_SECONDS / 60 + 1).acquire()
    with pytest.raises(
        UserError, match=r"lost the writer lease of checkpoint folder .* to training job 'job-b'"
    ):
        save_checkpoint(tmp_path, 5, _write, keep=2, lease=first)
    assert checkpoint_folders(tmp_path) == []
    first.release()
    assert json.loads((tmp_path / LEASE).read_text())["job"] == "job-b"  # not ours to remove


def test_each_save_refreshes_the_heartbeat_atomically(tmp_path):
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    lease = WriterLease(tmp_path, "job-a", clock=lambda: now[0])
    lease.acquire()
    now[0] += timedelta(minutes=5)
    save_checkpoint(tmp_path, 5, _write, keep=2, lease=lease)
    record = json.loads((tmp_path / LEASE).read_text())
    assert record["started_at"] == "2026-01-01T00:00:00+00:00"
    assert record["heartbeat_at"] == "2026-01-01T00:05:00+00:00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000005", LEASE]  # no temporary file left


def test_the_lease_heartbeats_while_held_and_is_released_after(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "HEARTBEAT_SECONDS", 0.01)
    ticks = iter(range(10**6))
    clock = lambda: datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=next(ticks))  # noqa: E731
    with WriterLease(tmp_path, "job-a", clock=clock).held():
        first = json.loads((tmp_path / LEASE).read_text())["heartbeat_at"]
        deadline = time.time() + 10
        while json.loads((tmp_path / LEASE).read_text())["heartbeat_at"] == first:
            assert time.time() < deadline, "no heartbeat"
            time.sleep(0.01)
    assert not (tmp_path / LEASE).exists()


def test_the_torch_trainer_refuses_a_held_folder_before_any_setup(tmp_path, monkeypatch):
    from training.backends import torch_backend

    _lease(tmp_path, "exec-1-FineTune").acquire()
    monkeypatch.setattr(torch_backend, "setup", lambda job: pytest.fail("set up despite the lease"))
    job = _job(tmp_path)
    job.job_name = "exec-2-FineTune"
    with pytest.raises(UserError, match="is in use by training job 'exec-1-FineTune'"):
        torch_backend.run(job)


def _neuron_job(tmp_path, job_name):
    from training.hyperparameters import TrainHyperparameters
    from training.job import TrainJob

    return TrainJob(
        hp=TrainHyperparameters(),
        train_path=tmp_path,
        validation_path=None,
        model_source="m",
        gguf_file=None,
        model_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "ckpt",
        job_name=job_name,
    )


def test_the_neuron_launcher_holds_the_lease_while_its_workers_run(tmp_path, monkeypatch):
    from training.backends import neuron_backend

    seen = {}

    def fake_run(cmd, env, check):
        seen["lease"] = json.loads((tmp_path / "ckpt" / LEASE).read_text())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(neuron_backend.subprocess, "run", fake_run)
    monkeypatch.setattr(neuron_backend, "workers_per_node", lambda instance_type, env: 2)
    neuron_backend.run(_neuron_job(tmp_path, "exec-1-FineTune"))
    assert seen["lease"]["job"] == "exec-1-FineTune" and seen["lease"]["pid"] == os.getpid()
    assert not (tmp_path / "ckpt" / LEASE).exists()


def test_the_neuron_launcher_refuses_a_held_folder_before_launching(tmp_path, monkeypatch):
    from training.backends import neuron_backend

    (tmp_path / "ckpt").mkdir()
    _lease(tmp_path / "ckpt", "exec-1-FineTune").acquire()
    monkeypatch.setattr(neuron_backend.subprocess, "run", lambda *a, **k: pytest.fail("launched"))
    monkeypatch.setattr(neuron_backend, "workers_per_node", lambda instance_type, env: 2)
    with pytest.raises(UserError, match="is in use by training job 'exec-1-FineTune'"):
        neuron_backend.run(_neuron_job(tmp_path, "exec-2-FineTune"))


def test_a_retried_fine_tune_finds_a_crashed_jobs_lease_stale():
    """The FineTune step's job-level retry (a new training job, a new name) waits IntervalSeconds before
    it starts. The crashed job's lease must be stale by then, or the retry would be refused."""
    from pathlib import Path

    from training.checkpoints import LEASE_STALE_SECONDS

    golden = json.loads((Path(__file__).parent / "golden" / "pipeline.json").read_text())
    (fine_tune,) = [s for s in golden["Steps"] if s["Name"] == "FineTune"]
    job_retries = [
        p for p in fine_tune["RetryPolicies"] if "SageMaker.JOB_INTERNAL_ERROR" in p["ExceptionType"]
    ]
    assert job_retries and all(p["IntervalSeconds"] >= LEASE_STALE_SECONDS for p in job_retries)
