"""train -> evaluate -> compile --target cpu -> serve, each as the real entrypoint in a subprocess,
on a 2-layer random Llama. The server is probed with every bad-request kind and 8 concurrent clients."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
VAL = ROOT / "training/tasks/date_normalization/validation.jsonl"


def _entrypoint(*args, env=None, timeout=300):
    proc = subprocess.run(
        [sys.executable, "-m", "containers.entrypoint", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, tiny_model):
    work = tmp_path_factory.mktemp("lifecycle")
    opt = work / "opt"
    (opt / "input/config").mkdir(parents=True)
    (opt / "input/data/train").mkdir(parents=True)
    shutil.copy(ROOT / "training/tasks/date_normalization/train.jsonl", opt / "input/data/train/")
    (opt / "input/config/hyperparameters.json").write_text(
        json.dumps(
            {
                "base_model": str(tiny_model),
                "max_steps": "4",
                "warmup_steps": "1",
                "save_steps": "10",
                "logging_steps": "2",
            }
        )
    )
    _entrypoint("train", env={"MLOPS_OPT_ML": str(opt)})
    out = _entrypoint(
        "evaluate",
        "--model-dir",
        str(opt / "model"),
        "--data",
        str(VAL),
        "--base-model",
        str(tiny_model),
        "--output-dir",
        str(work / "eval"),
        "--batch-size",
        "8",
        "--max-new-tokens",
        "4",
    )
    assert "metrics eval_loss=" in out and "exact_match=" in out
    _entrypoint(
        "compile",
        "--target",
        "cpu",
        "--model-dir",
        str(opt / "model"),
        "--output-dir",
        str(work / "compiled"),
        "--batch-size",
        "4",
        "--sequence-length",
        "160",
        "--max-new-tokens",
        "16",
    )
    return work


def test_evaluation_and_compile_reports(compiled):
    metrics = json.loads((compiled / "eval" / "evaluation.json").read_text())["metrics"]
    assert {"eval_loss", "perplexity", "exact_match", "base_exact_match", "exact_match_improvement"} <= set(
        metrics
    )
    report = json.loads((compiled / "compiled" / "compile_report.json").read_text())
    assert report["target"] == "cpu" and report["batch_size"] == 4 and report["sequence_length"] == 160
    assert report["verification"]["completion_tokens"] > 0
    serving = json.loads((compiled / "compiled" / "serving_config.json").read_text())
    assert serving["limits"] == {"batch_size": 4, "sequence_length": 160, "max_new_tokens": 16}


@pytest.fixture(scope="module")
def server(compiled):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "containers.entrypoint", "serve", "--host", "127.0.0.1"],
        cwd=ROOT,
        env={**os.environ, "MLOPS_OPT_ML": str(compiled / "srv"), "SAGEMAKER_BIND_TO_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # SageMaker mounts the artifact at /opt/ml/model; here that is <MLOPS_OPT_ML>/model.
    (compiled / "srv").mkdir(exist_ok=True)
    if not (compiled / "srv" / "model").exists():
        (compiled / "srv" / "model").symlink_to(compiled / "compiled")
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{base}/ping").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "server never became ready"
        time.sleep(0.2)
    yield base, proc
    if proc.poll() is None:
        proc.kill()


def _chat(content="What is 1 March 2001 in YYYY-MM-DD format?", **extra):
    return {"messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 8, **extra}


def test_valid_request_gets_an_openai_completion(server):
    base, _ = server
    r = httpx.post(f"{base}/invocations", json=_chat(), timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert 0 < body["usage"]["completion_tokens"] <= 8


@pytest.mark.parametrize(
    "payload, status, needle",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "must be a JSON object"),
        (json.dumps({"messages": []}).encode(), 400, "messages: List should have at least 1 item"),
        (json.dumps({"messages": [{"role": "user"}]}).encode(), 400, "messages.0.content: Field required"),
        (json.dumps(_chat(logprobs=True)).encode(), 400, "unsupported parameter(s): logprobs"),
        (json.dumps(_chat(max_tokens=17)).encode(), 400, "max_tokens=17 exceeds this server's limit of 16"),
        (json.dumps(_chat(content="word " * 400)).encode(), 400, "serves at most sequence_length=160"),
        (json.dumps(_chat(n=2)).encode(), 400, "n=2: only n=1 is supported"),
        (
            json.dumps(_chat(temperature=5)).encode(),
            400,
            "temperature: Input should be less than or equal to 2",
        ),
        (b"x" * (1 << 20 + 1), 413, "request body is"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(server, payload, status, needle):
    base, proc = server
    r = httpx.post(
        f"{base}/invocations", content=payload, headers={"content-type": "application/json"}, timeout=60
    )
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    assert proc.poll() is None


def test_eight_concurrent_clients_all_succeed(server):
    base, _ = server
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda i: httpx.post(f"{base}/invocations", json=_chat(f"Convert {i} May 1999"), timeout=120),
                range(8),
            )
        )
    assert [r.status_code for r in responses] == [200] * 8


def test_sigterm_shuts_down_cleanly(server):
    _, proc = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "Finished server process" in proc.stdout.read()
