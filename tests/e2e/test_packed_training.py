"""The Prepare step's packed output as the training job's channels, end to end in two processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from containers.entrypoint import main

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "training/tasks/date_normalization"
pytestmark = pytest.mark.slow


def _processing_job(tmp_path, tiny_model, train_lines=None):
    opt = tmp_path / "opt"
    for name in ("train", "validation"):
        (opt / "processing" / name).mkdir(parents=True)
    if train_lines is None:
        shutil.copy(TASK / "train.jsonl", opt / "processing/train/")
    else:
        (opt / "processing/train/data.jsonl").write_text("\n".join(train_lines) + "\n")
    shutil.copy(TASK / "validation.jsonl", opt / "processing/validation/")
    shutil.copytree(tiny_model, opt / "processing/model")
    return opt


def test_finetune_trains_on_the_packed_channels(tmp_path, tiny_model, monkeypatch):
    """The Prepare output as the training job's channels: no tokenization in the job, same one shape."""
    opt = _processing_job(tmp_path, tiny_model)
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "256"]) == 0
    job = tmp_path / "job"
    (job / "input/config").mkdir(parents=True)
    shutil.copytree(opt / "processing/packed_train", job / "input/data/train")
    shutil.copytree(opt / "processing/packed_validation", job / "input/data/validation")
    (job / "input/config/hyperparameters.json").write_text(
        json.dumps(
            {
                "base_model": str(tiny_model),
                "max_seq_length": "256",
                "max_steps": "3",
                "warmup_steps": "1",
                "logging_steps": "1",
                "save_steps": "3",
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "containers.entrypoint", "train"],
        cwd=ROOT,
        env=dict(os.environ, MLOPS_OPT_ML=str(job)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "already packed (Prepare step): no tokenization here" in proc.stdout
    assert "tokenizing train" not in proc.stdout + proc.stderr
    report = json.loads((job / "model/training_report.json").read_text())
    assert report["steps_completed"] == 3 and report["distinct_input_shapes"] == 1
