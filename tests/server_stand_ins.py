"""Stand-ins for the CPU server's tokenizer and model, and the real app on a real socket in a thread.

Shared by the server tests (reliability, batching, streaming, the openai client): the stand-ins let a
test hold tokenization or generation at a known point and check what the server does meanwhile.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch
import uvicorn

from inference.server import Engine, ServeLimits, create_app

PAD, EOS, GENERATED = 0, 1, 7


class StandInTokenizer:
    """Tokenizes a conversation to [marker, 5, 5, ...]: the marker (2 + characters % 90) tells requests
    apart, and one 5 per 1000 characters keeps long prompts short in tokens.

    With a ``gate``, each call waits (at most 8 s) until the test opens it, so the test can act while
    tokenization is known to be in progress.
    """

    pad_token_id, eos_token_id = PAD, EOS

    def __init__(self, gate: threading.Event | None = None, marker_file: str | None = None) -> None:
        self.gate, self.marker_file = gate, marker_file
        self.threads: list[str] = []
        self.inside = 0
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):  # noqa: ANN001, ANN201
        with self.lock:
            self.threads.append(threading.current_thread().name)
            self.inside += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=8)
        text = "".join(m["content"] for m in messages)
        with self.lock:
            self.inside -= 1
        if self.marker_file:  # the SIGTERM test runs in another process: it counts lines here
            with open(self.marker_file, "a") as marker:
                marker.write("tokenized\n")
        return [2 + len(text) % 90] + [5] * (len(text) // 1000)

    def decode(self, tokens, skip_special_tokens):  # noqa: ANN001, ANN201
        return " ".join(str(t) for t in tokens)


class StandInModel:
    """A causal LM's forward as the server's RowBatch calls it: after ``step_s`` it predicts GENERATED for
    every row and appends zeros to the (real, transformers) DynamicCache. ``calls`` has one entry per
    prefill, with the first real token (the request's marker) of each row; ``decode_steps`` counts the
    one-token steps."""

    def __init__(self, step_s: float = 0.01, marker_file: str | None = None) -> None:
        self.step_s, self.marker_file = step_s, marker_file
        self.calls: list[dict] = []
        self.decode_steps = 0
        self.rows_per_call: list[int] = []
        self.started = threading.Event()

    def parameters(self) -> Iterator[torch.Tensor]:
        yield torch.zeros(1)

    def __call__(self, input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep=0):  # noqa: ANN001, ANN201
        time.sleep(self.step_s)
        rows, length = input_ids.shape
        self.rows_per_call.append(rows)
        if past_key_values.get_seq_length() == 0:
            markers = [
                int(row[mask[-length:].bool()][0])
                for row, mask in zip(input_ids, attention_mask, strict=True)
            ]
            self.calls.append({"markers": markers})
            self.started.set()
            if self.marker_file:
                Path(self.marker_file).write_text("generating\n")
        else:
            self.decode_steps += 1
        past_key_values.update(torch.zeros(rows, 1, length, 1), torch.zeros(rows, 1, length, 1), 0)
        # Certain of GENERATED, so sampled requests (temperature defaults to 1) never draw EOS either.
        logits = torch.full((rows, 1, 100), -math.inf)
        logits[..., GENERATED] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=past_key_values)


class StandInEngine(Engine):
    def __init__(self, limits: ServeLimits, tokenizer: StandInTokenizer, model: StandInModel) -> None:
        super().__init__(Path("."), limits, "stand-in")
        self.parts = (model, tokenizer)

    def load(self) -> None:
        self.model, self.tokenizer = self.parts
        self.loaded.set()


@contextmanager
def running(engine: Engine) -> Iterator[tuple[str, int]]:
    """The app on 127.0.0.1 (a free port) in a thread; yields (base URL, port)."""
    config = uvicorn.Config(
        create_app(engine), host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and engine.loaded.is_set()):
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def chat(content: str, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": content}], **extra}


def raw_request(port: int, body: bytes, content_length: int | None = None) -> socket.socket:
    """A POST /invocations sent on a socket the test controls (to close it, or to stall the body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    length = len(body) if content_length is None else content_length
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + body
    )
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def wait_for(condition, what: str, timeout: float = 10) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
