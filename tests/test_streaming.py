"""`stream: true` (issue 17): server-sent events in vLLM's chunk format, text deltas that join to the plain
completion, and errors before and after the stream begins."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server_stand_ins import StandInEngine, StandInModel, StandInTokenizer, chat, running, wait_for

from inference.generation import StableText
from inference.server import Engine, ServeLimits


def events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an SSE response, checking the framing (one ``data:`` line, blank line)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    body = response.read().decode()
    assert body.endswith("\n\n")
    blocks = body[:-2].split("\n\n")
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks), body
    return [block[len("data: ") :] for block in blocks]


def test_deltas_hold_back_a_split_character_and_join_to_the_decoded_text(smollm2_tokenizer):
    tok = smollm2_tokenizer
    text = "Datum: 30. Juni 1956 — 日本語 🎉 café, naïve"
    ids = tok.encode(text, add_special_tokens=False)
    stable = StableText(tok)
    deltas = [stable.delta(ids[: i + 1]) for i in range(len(ids))]
    held = [i for i in range(len(ids)) if tok.decode(ids[: i + 1]).endswith("\ufffd")]
    assert held, "the text should contain a character split across tokens, or this test proves nothing"
    # Up to a split character, exactly the text before it has gone out.
    assert all("".join(deltas[: i + 1]) == tok.decode(ids[: i + 1]).rstrip("\ufffd") for i in held)
    assert not any("\ufffd" in d for d in deltas)
    assert "".join(deltas) + stable.rest(tok.decode(ids, skip_special_tokens=True)) == text


@pytest.fixture(scope="module")
def tiny_server(tiny_model):
    """The real engine and app on the tiny random-weight Llama with SmolLM2's tokenizer."""
    limits = ServeLimits(batch_size=4, sequence_length=256, max_new_tokens=24, batch_wait_ms=5)
    with running(Engine(tiny_model, limits, "tiny")) as (base, _):
        yield base


def _stream(base: str, body: dict) -> list[dict | str]:
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        return [p if p == "[DONE]" else json.loads(p) for p in events(r)]


def test_a_streamed_greedy_completion_joins_to_the_plain_one(tiny_server):
    messages = [{"role": "user", "content": "Convert to ISO 8601: the 30th of June, 1956"}]
    plain = httpx.post(
        f"{tiny_server}/invocations",
        json={"messages": messages, "temperature": 0, "max_tokens": 24},
        timeout=60,
    ).json()
    # Four greedy streams at once: each shares its batch with the others, and still matches.
    body = {
        "messages": messages,
        "temperature": 0,
        "max_tokens": 24,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with ThreadPoolExecutor(4) as pool:
        streams = list(pool.map(lambda _: _stream(tiny_server, body), range(4)))
    for chunks in streams:
        assert chunks[-1] == "[DONE]"
        first, *middle, last, usage = chunks[:-1]
        assert isinstance(first, dict) and isinstance(last, dict) and isinstance(usage, dict)
        assert first["choices"] == [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ]
        assert {c["id"] for c in chunks[:-1]} == {first["id"]} and first["id"].startswith("chatcmpl-")  # type: ignore[index]
        assert {c["object"] for c in chunks[:-1]} == {"chat.completion.chunk"}  # type: ignore[index]
        assert {c["model"] for c in chunks[:-1]} == {"tiny"}  # type: ignore[index]
        assert all(c["choices"][0]["finish_reason"] is None for c in middle)  # type: ignore[index]
        assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
        content = "".join(c["choices"][0]["delta"]["content"] for c in [*middle, last])  # type: ignore[index]
        assert content == plain["choices"][0]["message"]["content"]
        assert usage["choices"] == [] and usage["usage"] == plain["usage"]


def test_stream_options_without_stream_is_a_400(tiny_server):
    r = httpx.post(
        f"{tiny_server}/v1/chat/completions",
        json={**chat("hi"), "stream_options": {"include_usage": True}},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"
    assert "stream_options can only be given with stream=true" in r.json()["error"]["message"]


def test_the_usage_chunk_comes_only_when_asked(tiny_server):
    chunks = _stream(tiny_server, {**chat("hi"), "stream": True, "max_tokens": 3})
    assert all("usage" not in c for c in chunks[:-1])  # type: ignore[operator]
    # vLLM's StreamOptions defaults include_usage to true: an empty object asks for it.
    chunks = _stream(tiny_server, {**chat("hi"), "stream": True, "max_tokens": 3, "stream_options": {}})
    assert chunks[-2]["usage"]["completion_tokens"] == 3  # type: ignore[index]


def test_a_stream_cut_by_the_shutdown_ends_with_an_error_event_and_done():
    model = StandInModel(step_s=0.01)
    limits = ServeLimits(batch_size=2, sequence_length=10_000, max_new_tokens=5000, batch_wait_ms=1)
    engine = StandInEngine(limits, StandInTokenizer(), model)
    with running(engine) as (base, _), ThreadPoolExecutor(1) as pool:
        stream = pool.submit(_stream, base, {**chat("A"), "stream": True})
        wait_for(lambda: model.decode_steps > 3, "the stream to be under way")
        engine.request_stop()
        engine.request_stop()  # a second signal: cut at once
        chunks = stream.result(timeout=30)
        # A new request while stopping is refused before any stream begins: a JSON 503.
        r = httpx.post(f"{base}/invocations", json={**chat("B"), "stream": True}, timeout=10)
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert chunks[-1] == "[DONE]"
    error = chunks[-2]["error"]  # type: ignore[index]
    assert error["code"] == 503 and error["type"] == "service_unavailable"
    assert error["message"] == (
        "the server is shutting down and stopped this completion at once on a second stop signal; send it again"
    )
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])  # type: ignore[index]


def test_a_streaming_client_that_leaves_stops_its_row():
    model = StandInModel(step_s=0.01)
    limits = ServeLimits(batch_size=2, sequence_length=10_000, max_new_tokens=5000, batch_wait_ms=1)
    engine = StandInEngine(limits, StandInTokenizer(), model)
    with running(engine) as (base, _):
        with httpx.stream("POST", f"{base}/invocations", json={**chat("A"), "stream": True}, timeout=30) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk: the stream has begun
        # The connection is closed; the row must stop between tokens, not run its 5000 steps.

        def stopped() -> bool:
            before = model.decode_steps
            time.sleep(0.1)  # ten steps of the stand-in
            return model.decode_steps == before

        wait_for(stopped, "the abandoned row to stop", timeout=10)
        assert model.decode_steps < 1000
        # The server goes on serving.
        assert httpx.post(f"{base}/invocations", json=chat("B", max_tokens=2), timeout=10).status_code == 200


def test_a_failure_before_the_first_token_is_a_json_500():
    class Failing(StandInModel):
        def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
            raise RuntimeError("out of memory")

    engine = StandInEngine(ServeLimits(sequence_length=64, max_new_tokens=4), StandInTokenizer(), Failing(0))
    with running(engine) as (base, _):
        r = httpx.post(f"{base}/v1/chat/completions", json={**chat("A"), "stream": True}, timeout=10)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["message"] == (
        "generation failed (RuntimeError: out of memory); the server log has the details"
    )
