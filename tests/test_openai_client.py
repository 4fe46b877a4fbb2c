"""The official `openai` client against the local server, as a user of the vLLM endpoint on inf2 calls it
(issue 17): the model list, plain and streamed chat completions, and errors as the client's exceptions."""

from __future__ import annotations

import openai
import pytest
from server_stand_ins import StandInEngine, StandInModel, StandInTokenizer, running, wait_for

from inference.server import Engine, ServeLimits


@pytest.fixture(scope="module")
def client(tiny_model):
    limits = ServeLimits(batch_size=4, sequence_length=256, max_new_tokens=16, batch_wait_ms=5)
    with running(Engine(tiny_model, limits, "tiny-chat")) as (base, _):
        yield openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=60)


MESSAGES = [{"role": "user", "content": "Convert to ISO 8601: the 30th of June, 1956"}]


def test_models_list_names_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-chat"]
    assert models.data[0].object == "model" and models.data[0].owned_by == "vllm"
    assert models.data[0].max_model_len == 256  # type: ignore[attr-defined]  # vLLM's extra field


def test_plain_and_streamed_completions(client):
    plain = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, temperature=0, max_tokens=12)
    choice = plain.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and plain.model == "tiny-chat"
    assert plain.usage is not None and 0 < plain.usage.completion_tokens <= 12

    stream = client.chat.completions.create(
        model="tiny-chat",
        messages=MESSAGES,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == choice.message.content and finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_a_bad_request_is_a_bad_request_error_with_our_message(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=17)
    assert info.value.status_code == 400
    assert info.value.body["message"] == "max_tokens=17 exceeds this server's limit of 16"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="stream_options can only be given with stream=true"):
        client.chat.completions.create(
            model="tiny-chat", messages=MESSAGES, stream_options={"include_usage": True}
        )


def test_a_wrong_model_name_is_not_found_as_on_vllm(client):
    with pytest.raises(openai.NotFoundError, match="this server serves `tiny-chat`"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)


def test_a_stream_cut_by_the_shutdown_raises_an_api_error_in_the_client():
    model = StandInModel(step_s=0.01)
    limits = ServeLimits(batch_size=2, sequence_length=10_000, max_new_tokens=5000, batch_wait_ms=1)
    engine = StandInEngine(limits, StandInTokenizer(), model)
    with running(engine) as (base, _):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=30)
        stream = client.chat.completions.create(model="stand-in", messages=MESSAGES, stream=True)
        received = [next(stream)]
        wait_for(lambda: model.decode_steps > 3, "the stream to be under way")
        engine.request_stop()
        engine.request_stop()
        with pytest.raises(openai.APIError, match="the server is shutting down and stopped this completion"):
            received += list(stream)
    assert received[0].choices[0].delta.role == "assistant"
