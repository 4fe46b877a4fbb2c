"""Checkpoints are sealed (size and sha256 per file) and their trainer state loads without running code."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from training.checkpoints import MANIFEST, latest_checkpoint, save_checkpoint


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
