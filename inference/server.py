"""`serve` on CPU/CUDA: the SageMaker serving contract with transformers generation and request batching.

* ``GET /ping``: 200 once the model is loaded, 503 while it loads.
* ``POST /invocations`` (and ``/v1/chat/completions``, vLLM's path): OpenAI chat completions.
* Requests that arrive together are batched, up to ``batch_size``: a batch starts when the first
  request is waiting and closes after ``batch_wait_ms`` or when it is full. Generation runs on one
  worker thread, so the event loop keeps answering /ping and refusing bad requests meanwhile.
* Limits come from ``serving_config.json`` (written by ``compile --target cpu``) when present, else
  from flags: a prompt plus its completion never exceeds ``sequence_length``.
* SIGTERM: uvicorn stops accepting, finishes in-flight requests and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from inference.generation import Generated, Shape, chat_prompt_ids, generate, load_for_inference
from inference.protocol import ChatRequest, RequestError, completion_body, parse_request
from inference.serving_contract import SERVING_CONFIG
from training.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeLimits:
    batch_size: int = 8
    sequence_length: int = 512  # prompt + completion tokens
    max_new_tokens: int = 256  # default and cap for one completion
    max_body_bytes: int = 1 << 20
    batch_wait_ms: float = 10.0

    def check(self, source: str) -> None:
        problems = [f"{k}={v}: must be > 0" for k, v in asdict(self).items() if v <= 0]
        if self.max_new_tokens >= self.sequence_length:
            problems.append(
                f"max_new_tokens={self.max_new_tokens} must be smaller than sequence_length={self.sequence_length}"
            )
        if problems:
            raise UserError(f"serving limits from {source}: " + "; ".join(problems))


def load_limits(model_dir: Path, overrides: dict[str, Any]) -> ServeLimits:
    """Limits from the model's serving_config.json, then explicit overrides (flags)."""
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
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        limits = replace(limits, **given)
        source += " + flags"
    limits.check(source)
    return limits


@dataclass
class _Pending:
    prompt: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    future: asyncio.Future


class Engine:
    """The loaded model, the request queue and the batching loop."""

    def __init__(self, model_dir: Path, limits: ServeLimits, model_name: str) -> None:
        self.model_dir, self.limits, self.model_name = model_dir, limits, model_name
        self.model: Any = None
        self.tokenizer: Any = None
        self.load_error: BaseException | None = None
        self.loaded = threading.Event()
        self.queue: asyncio.Queue[_Pending] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    def load(self) -> None:
        try:
            self.model, self.tokenizer = load_for_inference(self.model_dir)
            log.info("model loaded from %s (limits %s)", self.model_dir, asdict(self.limits))
            self.loaded.set()
        except BaseException as exc:  # reported by /ping and by the server's exit status
            self.load_error = exc
            log.exception("loading the model from %s failed", self.model_dir)

    def validate(self, request: ChatRequest) -> tuple[list[int], int]:
        """(prompt ids, completion budget) or a RequestError naming the limit."""
        prompt = chat_prompt_ids(self.tokenizer, [m.model_dump() for m in request.messages])
        s, cap = self.limits.sequence_length, self.limits.max_new_tokens
        if len(prompt) >= s:
            raise RequestError(
                f"the prompt is {len(prompt)} tokens; this model serves at most sequence_length={s} tokens "
                "(prompt + completion). Shorten the messages",
                param="messages",
            )
        asked = request.token_limit
        if asked is not None and asked > cap:
            raise RequestError(f"max_tokens={asked} exceeds this server's limit of {cap}", param="max_tokens")
        if asked is not None and len(prompt) + asked > s:
            raise RequestError(
                f"the prompt ({len(prompt)} tokens) plus max_tokens={asked} exceeds sequence_length={s}; "
                f"ask for at most {s - len(prompt)} tokens",
                param="max_tokens",
            )
        return prompt, asked if asked is not None else min(cap, s - len(prompt))

    async def submit(self, prompt: list[int], max_new: int, temperature: float, top_p: float) -> Generated:
        assert self.queue is not None
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(prompt, max_new, temperature, top_p, future))
        return await future

    async def batch_loop(self) -> None:
        self.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.limits.batch_wait_ms / 1000
            while len(batch) < self.limits.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            # One generate call per sampling setting: they cannot share a batch.
            groups: dict[tuple[float, float], list[_Pending]] = {}
            for item in batch:
                groups.setdefault((item.temperature, item.top_p), []).append(item)
            for (temperature, top_p), items in groups.items():
                await self._run(loop, items, temperature, top_p)

    async def _run(
        self, loop: asyncio.AbstractEventLoop, items: list[_Pending], temperature: float, top_p: float
    ) -> None:
        longest = max(len(i.prompt) for i in items)
        # Round the prefill length up so CPU kernels see a handful of shapes, never past the limit.
        prompt_length = min(-(-longest // 16) * 16, self.limits.sequence_length)
        shape = Shape(len(items), prompt_length, max(i.max_new_tokens for i in items))
        try:
            outputs = await loop.run_in_executor(
                self.executor,
                lambda: generate(
                    self.model,
                    self.tokenizer,
                    [i.prompt for i in items],
                    shape,
                    max_new_tokens=[i.max_new_tokens for i in items],
                    temperature=temperature,
                    top_p=top_p,
                    fill_batch=False,
                ),
            )
        except Exception as exc:
            log.exception("generation failed for a batch of %d", len(items))
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, output in zip(items, outputs, strict=True):
            if not item.future.done():  # the client may have gone away
                item.future.set_result(output)


def create_app(engine: Engine) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        threading.Thread(target=engine.load, name="load-model", daemon=True).start()
        task = asyncio.create_task(engine.batch_loop())
        yield
        task.cancel()
        engine.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="llm-neuron-mlops server", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/ping")
    async def ping() -> JSONResponse:
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
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(f"request body exceeds the limit of {limit} bytes", status=413)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the body is not valid JSON: {exc}") from None

    async def chat(request: Request) -> JSONResponse:
        try:
            if not engine.loaded.is_set():
                raise RequestError(
                    "the model is still loading; retry when GET /ping returns 200",
                    status=503,
                    kind="service_unavailable",
                )
            parsed = parse_request(await read_json(request))
            prompt, budget = engine.validate(parsed)
            output = await engine.submit(prompt, budget, parsed.temperature, parsed.top_p)
        except RequestError as exc:
            return error(exc)
        return JSONResponse(
            completion_body(
                parsed.model or engine.model_name,
                output.text,
                output.finish_reason,
                output.prompt_tokens,
                output.completion_tokens,
            )
        )

    app.add_api_route("/invocations", chat, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    return app


class GracefulServer(uvicorn.Server):
    """uvicorn's Server, except that SIGTERM/SIGINT end a graceful shutdown with exit status 0.

    uvicorn re-raises the captured signal after shutting down, so the process would die "killed by
    SIGTERM" even though it drained its requests; SageMaker and process supervisors read that as a crash.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: Any) -> None:
            log.info("received %s: finishing in-flight requests, then exiting", signal.Signals(signum).name)
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(model_dir: Path, limits: ServeLimits, host: str, port: int, model_name: str) -> int:
    engine = Engine(model_dir, limits, model_name)
    config = uvicorn.Config(
        create_app(engine), host=host, port=port, log_level="info", timeout_graceful_shutdown=30
    )
    server = GracefulServer(config)

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
