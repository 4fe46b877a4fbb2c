"""The real entrypoint in a subprocess on a 2-layer random Llama (SmolLM2's tokenizer), under a temp MLOPS_OPT_ML."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _job(tmp_path, tiny_model, **hp):
    opt = tmp_path / "opt"
    (opt / "input" / "config").mkdir(parents=True)
    (opt / "input" / "data" / "train").mkdir(parents=True)
    shutil.copy(ROOT / "training/tasks/date_normalization/train.jsonl", opt / "input/data/train/")
    params = {"base_model": str(tiny_model), "max_seq_length": "256", "warmup_steps": "1", **hp}
    (opt / "input/config/hyperparameters.json").write_text(json.dumps(params))
    return opt


def _start(opt):
    return subprocess.Popen(
        [sys.executable, "-m", "containers.entrypoint", "train"],
        cwd=ROOT,
        env=dict(os.environ, MLOPS_OPT_ML=str(opt)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_train_writes_model_report_and_metric_lines(tmp_path, tiny_model):
    opt = _job(tmp_path, tiny_model, max_steps="6", save_steps="3", logging_steps="2")
    out, _ = _start(opt).communicate(timeout=300)
    assert "train_loss=" in out and "tokens_per_second=" in out and "step=6" in out, out
    model = opt / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "adapter/adapter_model.safetensors"):
        assert (model / name).exists(), name
    report = json.loads((model / "training_report.json").read_text())
    assert report["steps_completed"] == 6 and report["distinct_input_shapes"] == 1
    assert report["resumed_from_checkpoint"] is None
    # MFU against the planner's FLOPs per token and a peak measured on this machine (training/mfu.py).
    mfu = report["mfu"]
    assert 0 < mfu["mfu"] < 1 and mfu["model_flops_per_token"] > 0 and mfu["peak_flops"] > 0
    assert mfu["mfu"] == round(mfu["tokens_per_second"] * mfu["model_flops_per_token"] / mfu["peak_flops"], 4)


def test_bad_hyperparameter_fails_with_reason_and_no_traceback(tmp_path, tiny_model):
    opt = _job(tmp_path, tiny_model, max_steps="zero")
    proc = _start(opt)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in out
    assert "max_steps: Input should be a valid integer" in (opt / "output/failure").read_text()


def test_sigkill_then_resume_from_checkpoint(tmp_path, tiny_model):
    # 60 steps: the kill lands after the first checkpoint (step 5) with most of the run still ahead, and
    # the resumed run stays well inside its timeout on a loaded 2-core machine (150 steps did not).
    opt = _job(tmp_path, tiny_model, max_steps="60", save_steps="5", logging_steps="20")
    proc = _start(opt)
    deadline = time.time() + 240
    while not list((opt / "checkpoints").glob("step-*/COMPLETE")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the process ended"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (opt / "model" / "training_report.json").exists()
    out, _ = _start(opt).communicate(timeout=300)
    assert "resumed from checkpoint" in out, out
    report = json.loads((opt / "model" / "training_report.json").read_text())
    assert report["steps_completed"] == 60
    assert report["resumed_from_checkpoint"]["step"] >= 5
