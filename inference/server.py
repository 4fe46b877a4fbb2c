"""`serve` on CPU/CUDA: the SageMaker serving contract, and the OpenAI routes vLLM serves on inf2.

* ``GET /ping``: 200 once the model is loaded, 503 while it loads or once the server is stopping.
* ``POST /invocations`` (and ``/v1/chat/completions``, vLLM's path): OpenAI chat completions, plain or
  with ``stream: true`` as server-sent events in vLLM's chunk format (``_events``).
* ``GET /v1/models``: the served model in vLLM's ``ModelList`` shape (``protocol.models_body``).
* Continuous batching, up to ``batch_size`` rows (inference/batching.py says why and how): between two
  tokens, finished rows leave and queued requests join; an idle server waits ``batch_wait_ms`` after
  the first request for company. Generation runs on one worker thread and tokenization on a small pool,
  so the event loop keeps answering /ping (SageMaker gives it 2 s) and refusing bad requests meanwhile.
  A prompt longer than ``max_prompt_chars`` is refused before it is tokenized, which bounds that CPU work.
* Limits come from ``serving_config.json`` (written by ``compile --target cpu``) when present, then
  from ``MLOPS_SERVE_<LIMIT>`` environment variables (a SageMaker model's ``Environment``), then
  from flags: a prompt plus its completion never exceeds ``sequence_length``.
* A client that closes its connection is dropped from the queue, or its row of the running batch
  stops between tokens (a streaming one too). A body that has not fully arrived after ``body_timeout_s``
  gets a 408, and the connection is closed (after a 413 too).
* SIGTERM: new connections are refused, queued requests and bodies still arriving get a 503 at once,
  in-flight generation may finish for ``shutdown_drain_s`` (at most 25 s) and is then cut between
  tokens (503; a stream that has begun gets the error as its last event), and the process exits 0
  within SageMaker's 30 s between SIGTERM and SIGKILL. A second signal cuts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from jinja2 import TemplateError

from inference.batching import RowBatch, Sampling
from inference.generation import Generated, StableText, chat_prompt_ids, load_for_inference
from inference.protocol import (
    SSE_DONE,
    ChatRequest,
    RequestError,
    StreamChunks,
    check_model_name,
    completion_body,
    models_body,
    parse_request,
    sse_data,
)
from inference.serving_contract import SERVING_CONFIG
from training.errors import UserError

log = logging.getLogger(__name__)

# The request timeout on /ping is 2 s, and on endpoint update or scale-in SageMaker sends SIGTERM and
# SIGKILL 30 s later: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
# ("How SageMaker Runs Your Inference Image", "How Your Container Should Respond to Health Check").
SAGEMAKER_STOP_GRACE_S = 30.0
# What uvicorn may take beyond shutdown_drain_s to send the cut requests' 503s and close: one token
# step, the responses, the lifespan shutdown. Past it uvicorn cancels handlers (a plain-text 500).
SHUTDOWN_MARGIN_S = 5
# Every limit can be set as MLOPS_SERVE_<NAME> in the model's Environment: SageMaker starts the image
# as `<image> serve` with no flags, so the environment is the only knob an endpoint has.
ENV_PREFIX = "MLOPS_SERVE_"
# The default max_prompt_chars per token of sequence_length. English averages about 4 characters per
# token and even a run of spaces packs about 52 into SmolLM2's tokens, so a longer prompt could not fit
# anyway; refusing it by length costs nothing, while tokenizing 1 MB costs about a CPU-second.
PROMPT_CHARS_PER_TOKEN = 64


def limit_env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class ServeLimits:
    batch_size: int = 8  # most rows in the running batch
    sequence_length: int = 512  # prompt + completion tokens
    max_new_tokens: int = 256  # default and cap for one completion
    max_body_bytes: int = 1 << 20
    batch_wait_ms: float = 10.0  # how long an idle server waits for company after the first request
    # Most characters of message content, checked before tokenizing; None: sequence_length * 64.
    max_prompt_chars: int | None = None
    # Seconds a request body may take to arrive in full (a stalled client otherwise holds its slot).
    body_timeout_s: float = 30.0
    # Seconds after SIGTERM that in-flight generation may run before it is cut between tokens. With
    # the margin uvicorn gets on top (see serve), the process exits within SAGEMAKER_STOP_GRACE_S.
    shutdown_drain_s: float = 20.0

    @property
    def prompt_char_limit(self) -> int:
        if self.max_prompt_chars is not None:
            return self.max_prompt_chars
        return self.sequence_length * PROMPT_CHARS_PER_TOKEN

    def check(self, source: str) -> None:
        problems = [f"{k}={v}: must be > 0" for k, v in asdict(self).items() if v is not None and not v > 0]
        if self.max_new_tokens >= self.sequence_length:
            problems.append(
                f"max_new_tokens={self.max_new_tokens} must be smaller than sequence_length={self.sequence_length}"
            )
        longest_drain = SAGEMAKER_STOP_GRACE_S - SHUTDOWN_MARGIN_S
        if self.shutdown_drain_s > longest_drain:
            problems.append(
                f"shutdown_drain_s={self.shutdown_drain_s:g} is too long: SageMaker sends SIGKILL "
                f"{SAGEMAKER_STOP_GRACE_S:g} s after SIGTERM, and the server needs {SHUTDOWN_MARGIN_S} s "
                f"after the drain to answer and close, so set {limit_env_var('shutdown_drain_s')} to at most "
                f"{longest_drain:g}"
            )
        if problems:
            raise UserError(f"serving limits from {source}: " + "; ".join(problems))


def _limits_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The MLOPS_SERVE_<LIMIT> variables that are set, parsed to their limit's type."""
    found: dict[str, Any] = {}
    for name, default in asdict(ServeLimits()).items():
        var = limit_env_var(name)
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        kind = float if isinstance(default, float) else int
        try:
            value = kind(raw)
        except ValueError:
            raise UserError(
                f"{var}={raw!r} is not {'a number' if kind is float else 'a whole number'}; "
                f"set it to the {name} this server should use, or unset it"
            ) from None
        if not math.isfinite(value):
            raise UserError(f"{var}={raw!r} is not a finite number; set a positive {name}, or unset it")
        found[name] = value
    return found


def load_limits(
    model_dir: Path, overrides: dict[str, Any], env: Mapping[str, str] | None = None
) -> ServeLimits:
    """Limits from the model's serving_config.json, then MLOPS_SERVE_* variables, then explicit overrides (flags)."""
    limits = ServeLimits()
    source = "defaults"
    config_file = model_dir / SERVING_CONFIG
    if config_file.is_file():
        try:
            saved = json.loads(config_file.read_text())["limits"]
            limits = replace(
                limits,
                **{k: saved[k] for k in ("batch_size", "sequence_length", "max_new_tokens") if k in saved},
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(
                f"{config_file}: not a serving config written by `compile --target cpu` ({exc})"
            ) from None
        source = str(config_file)
    from_env = _limits_from_env(os.environ if env is None else env)
    if from_env:
        limits = replace(limits, **from_env)
        source += " + " + ", ".join(limit_env_var(k) for k in from_env)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        limits = replace(limits, **given)
        source += " + flags"
    limits.check(source)
    return limits


@dataclass(eq=False)
class _Pending:
    prompt: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    future: asyncio.Future  # the Generated, or the RequestError that ended the request
    # Set on every new token and when the request ends; a streaming response waits on it.
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    tokens: list[int] = field(default_factory=list)  # generated so far, without EOS
    # The client went away: the scheduler skips it, or drops its row before the next token.
    cancelled: bool = False

    def finish(self, result: Generated) -> None:
        if not self.future.done():
            self.future.set_result(result)
        self.progress.set()

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            if self.cancelled:  # nobody waits for it: an exception would be logged as never retrieved
                self.future.cancel()
            else:
                self.future.set_exception(error)
        self.progress.set()


def stopping_error() -> RequestError:
    return RequestError(
        "the server is shutting down (it received SIGTERM) and did not start this request; "
        "send it again (SageMaker routes it to an instance that is still serving)",
        status=503,
        kind="service_unavailable",
    )


class Engine:
    """The loaded model, the request queue, the batching loop, and the shutdown state."""

    def __init__(self, model_dir: Path, limits: ServeLimits, model_name: str) -> None:
        self.model_dir, self.limits, self.model_name = model_dir, limits, model_name
        self.model: Any = None
        self.tokenizer: Any = None
        self.load_error: BaseException | None = None
        self.loaded = threading.Event()
        self.queue: asyncio.Queue[_Pending] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        # Tokenizing a long prompt takes CPU-time that must not stall the event loop (and /ping).
        # Two workers: prompts are bounded by max_prompt_chars, and generation needs the cores more.
        self.tokenize_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenize")
        # time.monotonic() after which in-flight generation is cut; None until a stop is requested.
        self.stop_deadline: float | None = None
        # A second stop signal cut in-flight generation at once, not after shutdown_drain_s.
        self.cut_at_once = False
        # Set on the event loop once a stop is requested: a request still sending its body stops waiting.
        self.stop_requested = asyncio.Event()

    def load(self) -> None:
        try:
            self.model, self.tokenizer = load_for_inference(self.model_dir)
            log.info("model loaded from %s (limits %s)", self.model_dir, asdict(self.limits))
            self.loaded.set()
        except BaseException as exc:  # reported by /ping and by the server's exit status
            self.load_error = exc
            log.exception("loading the model from %s failed", self.model_dir)

    @property
    def stopping(self) -> bool:
        return self.stop_deadline is not None

    def request_stop(self) -> None:
        """Begin shutting down; safe to call from a signal handler. A second call cuts in-flight work now."""
        now = time.monotonic()
        if self.stop_deadline is None:
            self.stop_deadline = now + self.limits.shutdown_drain_s
            log.info(
                "stopping: queued requests get 503; in-flight generation is cut after %g s "
                "(shutdown_drain_s, %s)",
                self.limits.shutdown_drain_s,
                limit_env_var("shutdown_drain_s"),
            )
        else:
            self.stop_deadline = min(self.stop_deadline, now)
            self.cut_at_once = True
            log.info("second stop request: cutting in-flight generation now")
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self.loop.call_soon_threadsafe(self._refuse_queued)

    def _refuse_queued(self) -> None:
        """Answer every request that has not started with a 503, instead of letting it wait for a kill."""
        self.stop_requested.set()
        while self.queue is not None and not self.queue.empty():
            self.queue.get_nowait().fail(stopping_error())

    def _row_must_stop(self, item: _Pending) -> bool:
        """Asked by the scheduler between tokens: the client left, or the shutdown deadline has passed."""
        deadline = self.stop_deadline
        return item.cancelled or (deadline is not None and time.monotonic() >= deadline)

    def check_prompt_length(self, request: ChatRequest) -> None:
        """Refuse a prompt by its length in characters before any tokenizing: that work grows with the input."""
        count, s = len(request.messages), self.limits.sequence_length
        # The characters alone miss the template: every message renders a role header of one token or
        # more, so 36,000 empty messages hold 0 characters yet render to a megabyte of text.
        if count > s:
            raise RequestError(
                f"the request has {count} messages; every message takes at least one token and this server "
                f"serves at most sequence_length={s} tokens. Send fewer messages",
                param="messages",
            )
        chars = sum(len(m.content) for m in request.messages)
        limit = self.limits.prompt_char_limit
        if chars > limit:
            raise RequestError(
                f"the messages hold {chars} characters; this server refuses prompts over "
                f"max_prompt_chars={limit} characters before tokenizing them (it serves at most "
                f"sequence_length={self.limits.sequence_length} tokens). Shorten the messages, or raise "
                f"the limit with the environment variable {limit_env_var('max_prompt_chars')}",
                param="messages",
            )

    async def validate(self, request: ChatRequest) -> tuple[list[int], int]:
        """(prompt ids, completion budget) or a RequestError naming the limit; tokenizes off the event loop."""
        self.check_prompt_length(request)
        messages = [m.model_dump() for m in request.messages]
        try:
            prompt = await asyncio.get_running_loop().run_in_executor(
                self.tokenize_executor, chat_prompt_ids, self.tokenizer, messages
            )
        except TemplateError as exc:
            # The model's chat template refused the conversation (e.g. a template without a system
            # role raises on one): the request's shape, not a server fault.
            raise RequestError(
                f"this model's chat template refused the messages: {exc}. Change the roles or their order",
                param="messages",
            ) from None
        return prompt, self.completion_budget(len(prompt), request.token_limit)

    def completion_budget(self, prompt_tokens: int, asked: int | None) -> int:
        s, cap = self.limits.sequence_length, self.limits.max_new_tokens
        if prompt_tokens >= s:
            raise RequestError(
                f"the prompt is {prompt_tokens} tokens; this model serves at most sequence_length={s} tokens "
                "(prompt + completion). Shorten the messages",
                param="messages",
            )
        if asked is not None and asked > cap:
            raise RequestError(f"max_tokens={asked} exceeds this server's limit of {cap}", param="max_tokens")
        if asked is not None and prompt_tokens + asked > s:
            raise RequestError(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens={asked} exceeds sequence_length={s}; "
                f"ask for at most {s - prompt_tokens} tokens",
                param="max_tokens",
            )
        return asked if asked is not None else min(cap, s - prompt_tokens)

    def _enqueue(self, prompt: list[int], max_new: int, temperature: float, top_p: float) -> _Pending:
        assert self.queue is not None
        if self.stopping:
            raise stopping_error()
        item = _Pending(prompt, max_new, temperature, top_p, asyncio.get_running_loop().create_future())
        self.queue.put_nowait(item)
        return item

    async def _wait(
        self, item: _Pending, until: Awaitable[Any], client_gone: Callable[[], Awaitable[None]] | None
    ) -> None:
        """Wait for ``until``; if ``client_gone()`` finishes first, the request is dropped (499)."""
        waiting = asyncio.ensure_future(until)
        watcher = asyncio.ensure_future(client_gone()) if client_gone else None
        try:
            await asyncio.wait(
                [waiting, *([watcher] if watcher else [])], return_when=asyncio.FIRST_COMPLETED
            )
            arrived = waiting.done()
        except asyncio.CancelledError:  # the handler itself was cancelled: nobody waits for the result
            item.cancelled = True
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
            waiting.cancel()  # a no-op once it is done
        if arrived:
            return
        item.cancelled = True
        item.future.cancel()
        log.info("a client closed its connection; its request was dropped")
        raise RequestError(
            "the client closed the connection before its completion was ready",
            status=499,
            kind="client_closed_request",
        )

    async def submit(
        self,
        prompt: list[int],
        max_new: int,
        temperature: float,
        top_p: float,
        client_gone: Callable[[], Awaitable[None]] | None = None,
    ) -> Generated:
        """Queue a completion and wait for it; if ``client_gone()`` finishes first, the request is dropped."""
        item = self._enqueue(prompt, max_new, temperature, top_p)
        await self._wait(item, asyncio.shield(item.future), client_gone)
        return item.future.result()

    async def open_stream(
        self,
        prompt: list[int],
        max_new: int,
        temperature: float,
        top_p: float,
        client_gone: Callable[[], Awaitable[None]] | None = None,
    ) -> _Pending:
        """Queue a completion and return it once its first token is out (or it ended).

        Waiting for the first token before answering keeps every error that comes earlier (a 503 at
        SIGTERM, a 500 from the prefill) an HTTP error with its status, as for a plain request; the time
        to the first byte is the same, since the first byte a streaming client wants is that token.
        """
        item = self._enqueue(prompt, max_new, temperature, top_p)
        await self._wait(item, item.progress.wait(), client_gone)
        if item.future.done() and item.future.exception() is not None:
            raise item.future.exception()  # type: ignore[misc]
        return item

    def _still_wanted(self, item: _Pending) -> bool:
        if item.future.done() or item.cancelled:
            return False
        if self.stopping:
            item.fail(stopping_error())
            return False
        return True

    async def _admissions(self, running: int) -> list[_Pending]:
        """The queued requests that join the batch now, at most ``batch_size - running``.

        An idle server waits for the first request, then ``batch_wait_ms`` for company, so a burst is
        prefilled in one forward pass; a busy one takes whatever is queued without waiting: the running
        rows must not stall.
        """
        assert self.queue is not None
        admit: list[_Pending] = []
        if running == 0:
            admit.append(await self.queue.get())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.limits.batch_wait_ms / 1000
            while len(admit) < self.limits.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    admit.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
        while running + len(admit) < self.limits.batch_size and not self.queue.empty():
            admit.append(self.queue.get_nowait())
        return [item for item in admit if self._still_wanted(item)]

    async def batch_loop(self) -> None:
        """Continuous batching (inference/batching.py says why): between two tokens, rows that are done,
        cut or abandoned leave and queued requests join, up to ``batch_size`` rows."""
        self.queue = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        running: list[_Pending] = []
        rows: RowBatch | None = None
        while True:
            # Between tokens: a row whose client left, or that the shutdown deadline cuts, stops here.
            for item in running:
                if self._row_must_stop(item):
                    item.fail(self._cut_error())
            drop = [row for row, item in enumerate(running) if item.future.done()]
            running = [item for item in running if not item.future.done()]
            admit = await self._admissions(len(running))
            if rows is None:
                if not admit:
                    continue
                # One RowBatch for the server's life: it keeps recent prompts' keys/values for reuse.
                rows = RowBatch(self.model, self._pad_id())
            try:
                tokens = await self.loop.run_in_executor(
                    self.executor,
                    rows.advance,
                    drop,
                    [(item.prompt, Sampling(item.temperature, item.top_p)) for item in admit],
                )
            except Exception as exc:
                log.exception("generation failed for a batch of %d", len(running) + len(admit))
                failure = RequestError(
                    f"generation failed ({type(exc).__name__}: {exc}); the server log has the details",
                    status=500,
                    kind="internal_error",
                )
                for item in running + admit:
                    item.fail(failure)
                running, rows = [], None
                continue
            running += admit
            for item, token in zip(running, tokens, strict=True):
                self._deliver(item, token)

    def _pad_id(self) -> int:
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0))

    def _deliver(self, item: _Pending, token: int) -> None:
        """Record a row's new token; finish the request at EOS or at its token budget."""
        if item.future.done():  # the client left during the step: its row is dropped next step
            return
        eos = token == self.tokenizer.eos_token_id
        if not eos:
            item.tokens.append(token)
        if eos or len(item.tokens) >= item.max_new_tokens:
            item.finish(
                Generated(
                    text=self.tokenizer.decode(item.tokens, skip_special_tokens=True),
                    prompt_tokens=len(item.prompt),
                    # EOS is a generated token too (as vLLM counts it), though not part of the text.
                    completion_tokens=len(item.tokens) + (1 if eos else 0),
                    finish_reason="stop" if eos else "length",
                )
            )
        else:
            item.progress.set()

    def _cut_error(self) -> RequestError:
        when = (
            "at once on a second stop signal"
            if self.cut_at_once
            else f"{self.limits.shutdown_drain_s:g} s after SIGTERM (shutdown_drain_s, "
            f"{limit_env_var('shutdown_drain_s')})"
        )
        return RequestError(
            f"the server is shutting down and stopped this completion {when}; send it again",
            status=503,
            kind="service_unavailable",
        )


async def _client_gone(request: Request) -> None:
    """Return once the client has closed its connection.

    Once the body has been read, the server's ``receive()`` only answers when the client disconnects
    (uvicorn returns ``http.disconnect`` then), so this waits without polling.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(f"request body exceeds the limit of {limit} bytes", status=413)
    return bytes(body)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    except ValueError:
        # An integer past sys.get_int_max_str_digits() (4300): json.loads raises a plain ValueError.
        raise RequestError(
            f"the body holds a number longer than {sys.get_int_max_str_digits()} digits, more than any field "
            "of a chat request takes; send the value you meant"
        ) from None
    except RecursionError:
        # Python's parser recurses once per nesting level; 100k levels exhaust the stack.
        raise RequestError(
            "the body nests JSON arrays or objects too deeply to parse (a chat request needs 4 levels: "
            "body, messages, message, content)"
        ) from None


def create_app(engine: Engine) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        threading.Thread(target=engine.load, name="load-model", daemon=True).start()
        task = asyncio.create_task(engine.batch_loop())
        yield
        task.cancel()
        engine.executor.shutdown(wait=False, cancel_futures=True)
        engine.tokenize_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="llm-neuron-mlops server", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(exc: RequestError) -> Response:
        # After a 408 or 413 the rest of the body may never come (or is not wanted): close the connection,
        # or uvicorn keeps the socket open waiting for it and the stalled client keeps its slot.
        headers = {"Connection": "close"} if exc.status in (408, 413) else None
        return Response(exc.render(), status_code=exc.status, media_type="application/json", headers=headers)

    @app.get("/ping")
    async def ping() -> JSONResponse:
        if engine.stopping:
            return JSONResponse({"status": "stopping"}, status_code=503)
        if engine.loaded.is_set():
            return JSONResponse({"status": "ready"})
        if engine.load_error is not None:
            return JSONResponse({"status": "failed", "error": str(engine.load_error)}, status_code=500)
        return JSONResponse({"status": "loading"}, status_code=503)

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        limit = engine.limits.max_body_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(f"request body is {declared} bytes; the limit is {limit}", status=413)
        timeout = engine.limits.body_timeout_s
        try:
            body = await _body_unless_stopping(_read_body(request, limit), timeout)
        except asyncio.TimeoutError:
            raise RequestError(
                f"the request body did not arrive in full within body_timeout_s={timeout:g} s; send the "
                f"whole body without pausing, or raise the limit with {limit_env_var('body_timeout_s')}",
                status=408,
                kind="request_timeout",
            ) from None
        return parse_json(body)

    async def _body_unless_stopping(reading: Awaitable[bytes], timeout: float) -> bytes:
        """The body, or the 503 stopping error as soon as a stop is requested: a request whose body is
        still arriving would be refused anyway, and waiting body_timeout_s for it would outlast uvicorn's
        graceful shutdown, which then cancels the handler with a plain-text 500."""
        body = asyncio.ensure_future(asyncio.wait_for(reading, timeout))
        stop = asyncio.ensure_future(engine.stop_requested.wait())
        try:
            await asyncio.wait({body, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not body.done():
                raise stopping_error()
            return body.result()
        finally:
            stop.cancel()
            body.cancel()  # a no-op once it is done

    async def chat(request: Request) -> Response:
        try:
            if engine.stopping:
                raise stopping_error()
            if not engine.loaded.is_set():
                raise RequestError(
                    "the model is still loading; retry when GET /ping returns 200",
                    status=503,
                    kind="service_unavailable",
                )
            parsed = parse_request(await read_json(request))
            check_model_name(parsed, engine.model_name)
            prompt, budget = await engine.validate(parsed)
            args = (prompt, budget, parsed.temperature, parsed.top_p)
            if parsed.stream:
                item = await engine.open_stream(*args, client_gone=lambda: _client_gone(request))
                return StreamingResponse(
                    _events(engine, item, parsed.include_usage), media_type="text/event-stream"
                )
            output = await engine.submit(*args, client_gone=lambda: _client_gone(request))
        except RequestError as exc:
            return error(exc)
        return JSONResponse(
            completion_body(
                engine.model_name,
                output.text,
                output.finish_reason,
                output.prompt_tokens,
                output.completion_tokens,
            )
        )

    async def models() -> JSONResponse:
        return JSONResponse(
            models_body(engine.model_name, str(engine.model_dir), engine.limits.sequence_length)
        )

    app.add_api_route("/invocations", chat, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    return app


async def _events(engine: Engine, item: _Pending, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events as vLLM's OpenAI server sends them for ``stream: true``
    (vllm-project/vllm@003fe593, vllm/entrypoints/openai/serving_chat.py, ``chat_completion_stream_generator``):
    a first chunk with the role, a chunk per new piece of text, a last chunk with the finish reason,
    the usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``. An error after the
    stream began (the shutdown cut it, generation failed) is a ``data: {"error": ...}`` event followed
    by ``[DONE]``, as there; the official ``openai`` client raises it as an ``APIError``.
    """
    chunks = StreamChunks(engine.model_name)
    text = StableText(engine.tokenizer)
    try:
        yield chunks.role()
        while True:
            await item.progress.wait()
            item.progress.clear()
            if item.future.done():
                break
            delta = text.delta(item.tokens)
            if delta:
                yield chunks.content(delta)
        failure = item.future.exception()
        if failure is not None:
            error = failure if isinstance(failure, RequestError) else RequestError(str(failure), status=500)
            yield sse_data(error.stream_body())
        else:
            output: Generated = item.future.result()
            yield chunks.finish(text.rest(output.text), output.finish_reason)
            if include_usage:
                yield chunks.usage(output.prompt_tokens, output.completion_tokens)
        yield SSE_DONE
    finally:
        if not item.future.done():  # the client left mid-stream: its row stops before the next token
            item.cancelled = True
            log.info("a streaming client closed its connection; its request was dropped")


class GracefulServer(uvicorn.Server):
    """uvicorn's Server, except that SIGTERM/SIGINT end a graceful shutdown with exit status 0.

    uvicorn re-raises the captured signal after shutting down, so the process would die "killed by
    SIGTERM" even though it drained its requests; SageMaker and process supervisors read that as a crash.
    ``on_stop`` runs in the signal handler, so queued requests are answered before uvicorn's own
    shutdown begins.
    """

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None] = lambda: None) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: Any) -> None:
            log.info("received %s: finishing in-flight requests, then exiting", signal.Signals(signum).name)
            self.should_exit = True
            self.on_stop()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(model_dir: Path, limits: ServeLimits, host: str, port: int, model_name: str) -> int:
    engine = Engine(model_dir, limits, model_name)
    limits.check("serve")  # load_limits checked them; a caller that built its own gets the same check
    config = uvicorn.Config(
        create_app(engine),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=math.ceil(limits.shutdown_drain_s) + SHUTDOWN_MARGIN_S,
    )
    server = GracefulServer(config, on_stop=engine.request_stop)

    def stop_if_load_fails() -> None:
        # A server that can never answer must not sit there failing health checks: exit non-zero.
        while not engine.loaded.wait(0.5):
            if engine.load_error is not None:
                server.should_exit = True
                return

    threading.Thread(target=stop_if_load_fails, daemon=True).start()
    log.info("serving %s on http://%s:%d (POST /invocations, GET /ping)", model_dir, host, port)
    server.run()
    if engine.load_error is not None:
        raise RuntimeError(f"the model at {model_dir} could not be loaded: {engine.load_error}")
    return 0
