"""The CPU server under load, disconnects, slow clients, hostile bodies and SIGTERM (issue 15, items 11-14).

The HTTP tests run the real app on a real socket (uvicorn in a thread) with a stand-in tokenizer and
model, so they can hold tokenization or generation at a known point and check what the server does
meanwhile. Nothing here asserts on elapsed time except generous upper bounds on waits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_stand_ins import (
    StandInEngine,
    StandInModel,
    StandInTokenizer,
    chat,
    raw_request,
    read_response,
    running,
    wait_for,
)

from inference.server import ServeLimits, load_limits
from training.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


# Item 11: /ping stalls under big prompts.


def test_ping_answers_while_big_prompts_are_being_tokenized():
    gate = threading.Event()
    tokenizer = StandInTokenizer(gate=gate)
    engine = StandInEngine(ServeLimits(sequence_length=512, max_new_tokens=4), tokenizer, StandInModel(0))
    big = "x" * 30_000  # under the default max_prompt_chars (512 * 64), so it is tokenized
    with running(engine) as (base, _), ThreadPoolExecutor(8) as pool:
        posts = [pool.submit(httpx.post, f"{base}/invocations", json=chat(big), timeout=30) for _ in range(8)]
        assert tokenizer.entered.wait(10)
        # Tokenization is held inside the tokenizer: before the fix it ran on the event loop, which
        # could not answer /ping until it finished (8 x 1 MB took 5.2 s; SageMaker gives /ping 2 s).
        ping = httpx.get(f"{base}/ping", timeout=5)
        assert ping.status_code == 200
        assert tokenizer.inside > 0 and not gate.is_set()
        gate.set()
        assert [p.result().status_code for p in posts] == [200] * 8
    assert tokenizer.threads and all(name.startswith("tokenize") for name in tokenizer.threads)


def test_an_oversized_prompt_is_refused_by_length_before_tokenizing():
    tokenizer = StandInTokenizer()
    engine = StandInEngine(
        ServeLimits(sequence_length=64, max_new_tokens=4, max_prompt_chars=1000), tokenizer, StandInModel(0)
    )
    with running(engine) as (base, _):
        r = httpx.post(f"{base}/invocations", json=chat("y" * 1001), timeout=10)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["param"] == "messages"
        assert (
            "the messages hold 1001 characters; this server refuses prompts over max_prompt_chars=1000"
            in (error["message"])
        )
        assert (
            "raise the limit with the environment variable MLOPS_SERVE_MAX_PROMPT_CHARS" in error["message"]
        )
        assert tokenizer.threads == []  # refused before any tokenizing
        assert httpx.post(f"{base}/invocations", json=chat("y" * 1000), timeout=10).status_code == 200


def test_limits_come_from_mlops_serve_environment_variables(tmp_path):
    assert ServeLimits(sequence_length=100).prompt_char_limit == 6400
    env = {"MLOPS_SERVE_MAX_PROMPT_CHARS": "5000", "MLOPS_SERVE_BODY_TIMEOUT_S": "2.5"}
    limits = load_limits(tmp_path, {"batch_size": None}, env=env)
    assert (limits.prompt_char_limit, limits.body_timeout_s) == (5000, 2.5)
    assert load_limits(tmp_path, {"max_prompt_chars": 7}, env=env).prompt_char_limit == 7  # a flag wins
    with pytest.raises(
        UserError,
        match=r"MLOPS_SERVE_SHUTDOWN_DRAIN_S='soon' is not a number; set it to the shutdown_drain_s",
    ):
        load_limits(tmp_path, {}, env={"MLOPS_SERVE_SHUTDOWN_DRAIN_S": "soon"})
    with pytest.raises(
        UserError,
        match=r"serving limits from defaults \+ MLOPS_SERVE_MAX_PROMPT_CHARS: max_prompt_chars=0: must be > 0",
    ):
        load_limits(tmp_path, {}, env={"MLOPS_SERVE_MAX_PROMPT_CHARS": "0"})


# Item 12: SIGTERM with a long queue.


def _serve_stand_in(port: int, marker_dir: str) -> int:
    """The real `serve` (signals, uvicorn, shutdown) around a stand-in model; run in a subprocess."""
    from inference import server

    tokenizer = StandInTokenizer(marker_file=os.path.join(marker_dir, "tokenized"))
    model = StandInModel(step_s=0.02, marker_file=os.path.join(marker_dir, "generating"))
    server.load_for_inference = lambda model_dir: (model, tokenizer)  # type: ignore[assignment]
    limits = ServeLimits(
        batch_size=1, sequence_length=100_000, max_new_tokens=50_000, batch_wait_ms=1, shutdown_drain_s=1.0
    )
    return server.serve(Path("."), limits, "127.0.0.1", port, "stand-in")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_answers_queued_requests_with_503_and_exits_within_the_grace_period(tmp_path):
    port = _free_port()
    code = f"import sys; sys.path.insert(0, 'tests'); import test_server_reliability as t; sys.exit(t._serve_stand_in({port}, {str(tmp_path)!r}))"
    log = tmp_path / "serve.log"
    with log.open("w") as out:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base}/ping", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "the server to start", timeout=120)
        tokenized = tmp_path / "tokenized"
        with ThreadPoolExecutor(3) as pool:
            # 50,000 tokens at 20 ms each: without a bound, this request would hold the server for 1000 s.
            in_flight = pool.submit(httpx.post, f"{base}/invocations", json=chat("A"), timeout=60)
            wait_for((tmp_path / "generating").exists, "generation to start")
            queued = [
                pool.submit(httpx.post, f"{base}/invocations", json=chat(c), timeout=60)
                for c in ("BB", "CCC")
            ]
            wait_for(
                lambda: tokenized.exists() and len(tokenized.read_text().split()) == 3, "3 tokenized requests"
            )
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            for response in (r.result() for r in queued):
                assert response.status_code == 503
                assert (
                    "the server is shutting down (it received SIGTERM) and did not start this request"
                    in (response.json()["error"]["message"])
                )
            response = in_flight.result()
            assert response.status_code == 503, response.text
            assert (
                "stopped this completion 1 s after SIGTERM (shutdown_drain_s, MLOPS_SERVE_SHUTDOWN_DRAIN_S)"
                in (response.json()["error"]["message"])
            )
        # SageMaker sends SIGKILL 30 s after SIGTERM; the generation thread must not hold the process.
        assert proc.wait(timeout=25) == 0, log.read_text()
        assert time.monotonic() - stopped_at < 25
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Item 13: disconnects and slow bodies.


def test_a_client_that_disconnects_stops_its_generation_and_leaves_the_queue():
    model, tokenizer = StandInModel(step_s=0.01), StandInTokenizer()
    limits = ServeLimits(batch_size=1, sequence_length=10_000, max_new_tokens=5000, batch_wait_ms=1)
    engine = StandInEngine(limits, tokenizer, model)
    with running(engine) as (base, port):
        running_request = raw_request(port, json.dumps(chat("A")).encode())  # 5000 steps: 50 s
        assert model.started.wait(10)
        queued_request = raw_request(port, json.dumps(chat("BB")).encode())
        queue = engine.queue
        assert queue is not None
        wait_for(lambda: queue.qsize() == 1, "the second request to be queued")
        queued_request.close()
        # asyncio.Queue keeps its items in `_queue`; peeking is enough to know the server noticed.
        wait_for(
            lambda: all(item.cancelled for item in list(queue._queue)), "the queued request to be dropped"
        )
        running_request.close()
        # Before the fix the next request waited for the abandoned generation to finish.
        r = httpx.post(f"{base}/invocations", json=chat("CCC", max_tokens=3), timeout=15)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    assert [call["markers"] for call in model.calls] == [[3], [5]]  # "BB" (marker 4) never generated
    assert model.decode_steps < 5000


@pytest.mark.parametrize("sent", [b"", b'{"messages": '])
def test_a_body_that_does_not_arrive_gets_a_408(sent):
    engine = StandInEngine(
        ServeLimits(sequence_length=64, max_new_tokens=4, body_timeout_s=0.5),
        StandInTokenizer(),
        StandInModel(0),
    )
    with running(engine) as (_, port):
        sock = raw_request(port, sent, content_length=100)  # promises 100 bytes, then stalls
        status, body = read_response(sock)
        sock.close()
    assert status == 408
    assert body["error"]["message"] == (
        "the request body did not arrive in full within body_timeout_s=0.5 s; send the whole body "
        "without pausing, or raise the limit with MLOPS_SERVE_BODY_TIMEOUT_S"
    )


# Item 14: bodies that crashed the server.


@pytest.mark.parametrize(
    "body, param, needle",
    [
        (
            b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
            "model",
            "model: Value error",
        ),
        (
            b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}',
            "messages.0.content",
            "messages.0.content: Value error, contains a lone UTF-16 surrogate ('\\ud800') at character 1",
        ),
        (b'{"\\ud800": 1, "messages": []}', "\ud800", "unsupported parameter(s): \ud800"),
        (b"[" * 100_000 + b"]" * 100_000, None, "the body nests JSON arrays or objects too deeply to parse"),
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "too deeply to parse"),
    ],
)
def test_unencodable_or_deeply_nested_bodies_get_a_json_400_before_any_generation(body, param, needle):
    model, tokenizer = StandInModel(0), StandInTokenizer()
    engine = StandInEngine(ServeLimits(sequence_length=64, max_new_tokens=4), tokenizer, model)
    with running(engine) as (base, _):
        r = httpx.post(
            f"{base}/invocations", content=body, headers={"content-type": "application/json"}, timeout=10
        )
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert needle in r.json()["error"]["message"] and r.json()["error"]["param"] == param
    assert tokenizer.threads == [] and model.calls == []


class SystemRefusingTokenizer(StandInTokenizer):
    """A chat template that has no system role raises, as many models' templates do."""

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):  # noqa: ANN001, ANN201
        from jinja2 import TemplateError

        if messages[0]["role"] == "system":
            raise TemplateError("System role not supported")
        return super().apply_chat_template(messages, add_generation_prompt, tokenize)


def test_a_chat_template_refusing_the_roles_is_a_json_400():
    model, tokenizer = StandInModel(0), SystemRefusingTokenizer()
    engine = StandInEngine(ServeLimits(sequence_length=64, max_new_tokens=4), tokenizer, model)
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    with running(engine) as (base, _):
        r = httpx.post(f"{base}/invocations", json=body, timeout=10)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["param"] == "messages"
    assert "chat template refused the messages: System role not supported" in r.json()["error"]["message"]
    assert model.calls == []


# ---- issue 15, review: what an independent review found --------------------------------------------


def _stand_in(**limits: object) -> StandInEngine:
    settings = {"sequence_length": 64, "max_new_tokens": 4, **limits}
    return StandInEngine(ServeLimits(**settings), StandInTokenizer(), StandInModel(0))  # type: ignore[arg-type]


def test_a_number_past_pythons_digit_limit_is_a_json_400():
    # json.loads raises a plain ValueError (not JSONDecodeError) for an integer over 4300 digits.
    engine = _stand_in()
    body = b'{"max_tokens": ' + b"1" * 5000 + b', "messages": [{"role": "user", "content": "hi"}]}'
    with running(engine) as (base, _):
        r = httpx.post(
            f"{base}/invocations", content=body, headers={"content-type": "application/json"}, timeout=10
        )
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["message"].startswith(
        "the body holds a number longer than 4300 digits, more than any field of a chat request takes"
    )


def test_more_messages_than_tokens_are_refused_before_tokenizing():
    # 1000 empty messages hold 0 characters but render to tens of kilobytes of template text.
    engine = _stand_in()
    messages = [{"role": "user", "content": ""}] * 1000
    with running(engine) as (base, _):
        r = httpx.post(f"{base}/invocations", json={"messages": messages}, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
        assert r.json()["error"]["message"] == (
            "the request has 1000 messages; every message takes at least one token and this server serves "
            "at most sequence_length=64 tokens. Send fewer messages"
        )
        assert engine.parts[1].threads == []  # refused before any tokenizing
        ok = httpx.post(f"{base}/invocations", json={"messages": messages[:60]}, timeout=10)
        assert ok.status_code == 200


def test_a_drain_past_sagemakers_grace_period_is_refused(tmp_path):
    with pytest.raises(UserError) as info:
        load_limits(tmp_path, {}, env={"MLOPS_SERVE_SHUTDOWN_DRAIN_S": "100"})
    message = str(info.value)
    assert "MLOPS_SERVE_SHUTDOWN_DRAIN_S" in message and "shutdown_drain_s=100" in message
    assert "SageMaker sends SIGKILL 30 s after SIGTERM" in message and "at most 25" in message
    assert load_limits(tmp_path, {}, env={"MLOPS_SERVE_SHUTDOWN_DRAIN_S": "25"}).shutdown_drain_s == 25


def test_a_second_stop_signal_says_it_cut_the_completion_at_once():
    model = StandInModel(step_s=0.01)
    limits = ServeLimits(batch_size=1, sequence_length=10_000, max_new_tokens=5000, batch_wait_ms=1)
    engine = StandInEngine(limits, StandInTokenizer(), model)
    with running(engine) as (base, _), ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.post, f"{base}/invocations", json=chat("A"), timeout=30)
        assert model.started.wait(10)
        engine.request_stop()
        engine.request_stop()
        response = in_flight.result()
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "after SIGTERM" not in message
    assert message == (
        "the server is shutting down and stopped this completion at once on a second stop signal; send it again"
    )


def test_a_stop_while_a_body_is_arriving_answers_503_at_once():
    # Before the fix the body wait ran for body_timeout_s (30 s by default), past uvicorn's graceful
    # shutdown (drain + 5 s), which then cancelled the handler: a plain-text 500.
    engine = _stand_in(body_timeout_s=20)
    with running(engine) as (_, port):
        sock = raw_request(port, b'{"messages": ', content_length=100)  # promises 100 bytes, then stalls
        time.sleep(0.2)  # the handler is waiting for the rest of the body
        engine.request_stop()
        sock.settimeout(5)  # far under body_timeout_s: only the stop can answer this in time
        status, body = read_response(sock)
        sock.close()
    assert status == 503
    assert body["error"]["message"].startswith(
        "the server is shutting down (it received SIGTERM) and did not start this request"
    )


def _response_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without a response: {data!r}"
        data += chunk
    return data.partition(b"\r\n\r\n")[0].lower()


@pytest.mark.parametrize("status", [408, 413])
def test_408_and_413_close_the_connection(status):
    engine = _stand_in(body_timeout_s=0.5, max_body_bytes=1000)
    with running(engine) as (_, port):
        if status == 408:
            sock = raw_request(port, b"{", content_length=100)
        else:
            sock = raw_request(port, b"{", content_length=5000)  # refused by its declared length
        sock.settimeout(10)
        head = _response_head(sock)
        assert head.startswith(f"http/1.1 {status}".encode())
        assert b"\r\nconnection: close" in head
        # The server closes its side: the stalled client no longer holds a socket.
        while sock.recv(65536):
            pass
        sock.close()
