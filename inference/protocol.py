"""The OpenAI chat-completions subset the server speaks, as the vLLM Neuronx container does: plain and
streamed (server-sent events) completions, and the model list.

Validation lives here so every bad request gets a 4xx with a message that names the field, never
a crash. Parameters outside this subset are refused by name instead of being silently ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

# `user` is metadata only (OpenAI uses it for abuse tracking), so accepting it changes nothing.
SUPPORTED = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "user",
)


class RequestError(Exception):
    """A client error: HTTP ``status`` with an OpenAI-style error body."""

    def __init__(
        self, message: str, status: int = 400, param: str | None = None, kind: str = "invalid_request_error"
    ):
        super().__init__(message)
        self.message, self.status, self.param, self.kind = message, status, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}

    def stream_body(self) -> dict[str, Any]:
        """The body as an event inside a stream that has begun: no HTTP status can carry the failure
        any more, so ``code`` holds it, as vLLM's ``create_streaming_error_response`` does
        (vllm-project/vllm@0052bed3, vllm/entrypoints/openai/protocol.py: ``ErrorResponse(error=ErrorInfo(
        message, type, param, code: int))``)."""
        body = self.body()
        body["error"]["code"] = self.status
        return body

    def render(self) -> bytes:
        """The body as JSON bytes that can always be sent.

        ``ensure_ascii`` escapes anything a client echoed back at us (a lone surrogate in an unknown
        parameter's name, say), which UTF-8 cannot encode and would otherwise turn into a plain 500.
        """
        return json.dumps(self.body(), ensure_ascii=True).encode("ascii")


def _valid_unicode(text: str) -> str:
    """Refuse a lone UTF-16 surrogate (JSON ``"\\ud800"``): Python's json accepts it, but it is not
    Unicode text, so the tokenizer and the UTF-8 response encoder would fail on it after generation ran."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"contains a lone UTF-16 surrogate ({ascii(text[exc.start])}) at character {exc.start}, which is "
            "not valid Unicode; send the text as UTF-8, or escape a surrogate pair as both halves together"
        ) from None
    return text


# Every string the server tokenizes or echoes back.
Text = Annotated[str, AfterValidator(_valid_unicode)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: Text


class StreamOptions(BaseModel):
    """vLLM's ``StreamOptions``: ``include_usage`` defaults to true there, so ``"stream_options": {}``
    asks for the usage chunk (vllm-project/vllm@0052bed3, vllm/entrypoints/openai/protocol.py,
    ``class StreamOptions``)."""

    model_config = ConfigDict(extra="forbid")
    include_usage: bool | None = True
    continuous_usage_stats: bool | None = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = None

    @field_validator("messages")
    @classmethod
    def _last_is_not_assistant(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role == "assistant":
            raise ValueError("the last message is from the assistant; end with a user message to get a reply")
        return messages

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def parse_request(payload: Any) -> ChatRequest:
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(SUPPORTED))
    if unknown:
        raise RequestError(
            f"unsupported parameter(s): {', '.join(unknown)}; this server accepts {', '.join(SUPPORTED)}",
            param=unknown[0],
        )
    try:
        request = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise RequestError(problems, param=where) from None
    if request.n != 1:
        raise RequestError(f"n={request.n}: only n=1 is supported", param="n")
    # vLLM refuses the same (ChatCompletionRequest.validate_stream_options, vllm-project/vllm@0052bed3,
    # vllm/entrypoints/openai/protocol.py): "Stream options can only be defined when `stream=True`."
    if request.stream_options is not None and not request.stream:
        raise RequestError(
            'stream_options can only be given with stream=true; add "stream": true or drop stream_options',
            param="stream_options",
        )
    if request.stream_options is not None and request.stream_options.continuous_usage_stats:
        raise RequestError(
            "stream_options.continuous_usage_stats=true is not supported by this server; drop it "
            "(include_usage sends the usage once, after the last chunk)",
            param="stream_options.continuous_usage_stats",
        )
    return request


def check_model_name(request: ChatRequest, served: str) -> None:
    """A ``model`` other than the served one is a 404, as on vLLM, whose ``_check_model`` answers
    "The model `X` does not exist." with NotFoundError (vllm-project/vllm@0030b9ff,
    vllm/entrypoints/openai/serving_engine.py);
    a client that names the wrong model locally would fail on the endpoint."""
    if request.model is not None and request.model != served:
        raise RequestError(
            f"The model `{request.model}` does not exist: this server serves `{served}` (GET /v1/models "
            "lists it). Send that name as `model`, or omit it",
            status=404,
            param="model",
            kind="NotFoundError",
        )


def models_body(served: str, root: str, max_model_len: int) -> dict[str, Any]:
    """``GET /v1/models`` in vLLM's shape: ``ModelList``/``ModelCard``/``ModelPermission`` in
    vllm-project/vllm@0052bed3 vllm/entrypoints/openai/protocol.py, filled as
    ``OpenAIServingModels.show_available_models`` does (vllm/entrypoints/openai/serving_models.py:
    ``ModelCard(id=name, max_model_len=..., root=model_path, permission=[ModelPermission()])``).
    ``owned_by`` is vLLM's default there; clients read only ``id``."""
    created = int(time.time())
    permission = {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    card = {
        "id": served,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [permission],
    }
    return {"object": "list", "data": [card]}


SSE_DONE = "data: [DONE]\n\n"


def sse_data(payload: dict[str, Any]) -> str:
    """One server-sent event; ``ensure_ascii`` for the reason ``RequestError.render`` gives."""
    return f"data: {json.dumps(payload, ensure_ascii=True)}\n\n"


class StreamChunks:
    """The ``chat.completion.chunk`` events of one streamed completion, shaped as vLLM's
    ``chat_completion_stream_generator`` dumps them with ``exclude_unset`` (vllm-project/vllm@003fe593,
    vllm/entrypoints/openai/serving_chat.py): every chunk shares ``id`` and ``created``; the first
    carries ``delta: {role: "assistant", content: ""}``, the last the ``finish_reason`` (and
    ``stop_reason``), and the usage chunk has ``choices: []``."""

    def __init__(self, model: str) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        return sse_data(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": choices,
                **extra,
            }
        )

    def role(self) -> str:
        return self._chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )

    def content(self, text: str) -> str:
        return self._chunk(
            [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]
        )

    def finish(self, text: str, finish_reason: str) -> str:
        return self._chunk(
            [
                {
                    "index": 0,
                    "delta": {"content": text},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "stop_reason": None,
                }
            ]
        )

    def usage(self, prompt_tokens: int, completion_tokens: int) -> str:
        return self._chunk(
            [],
            usage={
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens,
            },
        )


def completion_body(
    model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
