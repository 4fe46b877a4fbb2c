"""`mlops run --local` end to end on a 2-layer random Qwen3 (``tiny_qwen3_model``): the generated definition
runs every step, registers in the local MLflow registry and serves; a second run comes from the cache; the
gate's Fail path; `mlops endpoint stop --local`.

This is the one whole-pipeline run, and it runs the Qwen3 family: the Llama family (SmolLM2 is one) goes
through the same entrypoints in tests/e2e/test_train.py, test_packed_training.py and test_lifecycle.py
(train, evaluate, compile cpu, serve) and in `make demo`, so both families cover every step without a
second four-minute run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "training/tasks/date_normalization"
MLOPS = str(Path(sys.executable).parent / "mlops")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_qwen3_model):
    tmp = tmp_path_factory.mktemp("local_pipeline")
    (tmp / "train.jsonl").write_text("\n".join((TASK / "train.jsonl").read_text().splitlines()[:48]) + "\n")
    (tmp / "validation.jsonl").write_text(
        "\n".join((TASK / "validation.jsonl").read_text().splitlines()[:8]) + "\n"
    )
    sets = {
        "model.local_source": tiny_qwen3_model,
        "local.store_dir": tmp / "store",
        "data.train": tmp / "train.jsonl",
        "data.validation": tmp / "validation.jsonl",
        "training.max_steps": 4,
        "training.warmup_steps": 1,
        "training.save_steps": 2,
        "evaluation.batch_size": 4,
        "evaluation.max_new_tokens": 4,
        "serving.batch_size": 2,
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    return {"args": args, "store": tmp / "store"}


def mlops(*argv, timeout=600):
    return subprocess.run([MLOPS, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def first_run(settings):
    # The random 2-layer Qwen3 answers nothing right: exact_match is 0, so the threshold is 0 here.
    proc = mlops("run", "--local", "--param", "QualityThreshold=0", *settings["args"])
    yield proc
    mlops("endpoint", "stop", "--local", *settings["args"])


def stored(settings, uri):
    """The local store's folder for an s3:// URI."""
    return settings["store"] / "s3" / uri[len("s3://") :]


def report_of(proc):
    line = next(line for line in proc.stdout.splitlines() if line.startswith("report: "))
    return json.loads(Path(line.split("report: ", 1)[1]).read_text())


def test_first_run_executes_registers_and_serves(first_run, settings):
    assert first_run.returncode == 0, first_run.stdout[-4000:] + first_run.stderr[-4000:]
    report = report_of(first_run)
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses == {
        "Prepare": "done",
        "FineTune": "done",
        "Evaluate": "done",
        "QualityGate": "done",
        "CompileForInferentia": "done",
        "RegisterModel": "done",
        "QualityGateFailed": "skipped",
    }
    assert report["gates"]["QualityGate"]["passed"] is True
    assert {"eval_loss", "exact_match", "base_exact_match", "exact_match_improvement"} <= set(
        report["metrics"]
    )
    assert report["registered"]["ModelPackageVersion"] == 1
    assert "smoke test reply:" in first_run.stdout and "curl -s http://127.0.0.1:" in first_run.stdout

    # Training output packed as SageMaker does, and the checkpoint prefix keyed by the inputs.
    assert report["artifacts"]["FineTune.model"].endswith("-FineTune/output/model.tar.gz")
    # Every step ran on the Qwen3 model, and what was compiled and registered is still one.
    compiled = stored(settings, report["artifacts"]["CompileForInferentia.compiled"]) / "compile_report.json"
    assert json.loads(compiled.read_text())["model_class"] == "Qwen3ForCausalLM"
    # The registry holds what the cloud package holds.
    from pipelines.local.registry import model_versions

    version = model_versions(settings["store"], "llm-neuron-mlops-models")[0]
    tags = version["tags"]
    stats = json.loads(
        (stored(settings, report["artifacts"]["Prepare.stats"]) / "data_stats.json").read_text()
    )
    assert tags["meta.data_sha256"] == stats["content_sha256"]
    assert tags["approval_status"] == "PendingManualApproval"
    assert json.loads(tags["environment"])["SM_ON_BATCH_SIZE"] == "2"
    assert tags["inference_instances"].startswith("ml.inf2.")
    assert tags["meta.mlflow_run_id"] not in ("", "none") and version["run_id"] == tags["meta.mlflow_run_id"]
    assert "metric.exact_match" in tags

    status = mlops("endpoint", "status", "--local", *settings["args"])
    assert status.returncode == 0 and report["endpoint"]["url"] in status.stdout


def test_second_run_comes_from_the_cache(first_run, settings):
    proc = mlops("run", "--local", "--no-serve", "--param", "QualityThreshold=0", *settings["args"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    statuses = {s["name"]: s["status"] for s in report_of(proc)["steps"]}
    assert [statuses[n] for n in ("Prepare", "FineTune", "Evaluate", "CompileForInferentia")] == [
        "cached"
    ] * 4
    assert (
        statuses["RegisterModel"] == "done"
    )  # a new package version, as SageMaker registers one per execution
    assert "4 from cache" in proc.stdout


def test_gate_below_threshold_fails_the_run_with_the_message(first_run, settings):
    proc = mlops("run", "--local", "--no-serve", "--param", "QualityThreshold=0.99", *settings["args"])
    assert proc.returncode == 1
    assert "the run failed at step QualityGateFailed" in proc.stderr
    assert "Quality gate failed: exact_match=0.0 is below the threshold QualityThreshold=0.99" in proc.stderr
    assert "the pipeline stopped itself here" in proc.stderr


def test_bad_param_and_docker_without_engine_are_clear(first_run, settings):
    proc = mlops("run", "--local", "--param", "MaxStep=3", *settings["args"])
    assert proc.returncode == 2 and "--param MaxStep: no such parameter; the pipeline has" in proc.stderr
    proc = mlops("run", "--local", "--docker", *settings["args"])
    assert proc.returncode == 2 and "--docker:" in proc.stderr and "Run without --docker" in proc.stderr


def test_local_twins_of_the_operator_commands(first_run, settings):
    env = {**__import__("os").environ, "COLUMNS": "300"}

    def run(*a):
        return subprocess.run(
            [MLOPS, *a, *settings["args"]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    listed = run("models", "list", "--local")
    assert listed.returncode == 0 and "PendingManualApproval" in listed.stdout
    shown = run("models", "show", "1", "--local")
    assert shown.returncode == 0 and "exact_match" in shown.stdout and "data_sha256" in shown.stdout
    approved = run("models", "approve", "1", "--local", "--reason", "smoke test passed")
    assert approved.returncode == 0 and "model-package/llm-neuron-mlops-models/1: Approved" in approved.stdout
    assert "Approved" in run("models", "list", "--local").stdout
    status = run("pipeline", "status", "--local")
    assert "CompileForInferentia" in status.stdout and "cached" in status.stdout
    invoked = run(
        "endpoint",
        "invoke",
        "--local",
        "--prompt",
        "Convert this date to ISO 8601: 1 May 1990",
        "--max-tokens",
        "8",
    )
    # A reply of at least one token. Not necessarily visible text: a random model with tied embeddings (as
    # Qwen3-0.6B ties them) tends to repeat the prompt's last token, here the newline after "assistant".
    assert invoked.returncode == 0 and len(invoked.stdout) > len("\n"), invoked.stderr


def test_endpoint_stop(first_run, settings):
    proc = mlops("endpoint", "stop", "--local", *settings["args"])
    assert proc.returncode == 0 and "stopped the local endpoint at http://127.0.0.1:" in proc.stdout
    proc = mlops("endpoint", "stop", "--local", *settings["args"])
    assert "no local endpoint is running" in proc.stdout
