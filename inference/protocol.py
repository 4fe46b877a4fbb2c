"""The OpenAI chat-completions subset the server speaks, as the vLLM Neuronx container does.

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
    if request.stream:
        raise RequestError(
            "stream=true is not supported by this server; send stream=false or omit it", param="stream"
        )
    return request


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
