"""Continuous batching (inference/batching.py, issue 17): rows join and leave between tokens, and a
request's greedy tokens do not depend on which requests share its batch."""

from __future__ import annotations

import asyncio

import pytest
import torch
from server_stand_ins import GENERATED, StandInEngine, StandInModel, StandInTokenizer

from inference.batching import RowBatch, Sampling
from inference.server import ServeLimits


@pytest.fixture(scope="module")
def random_tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


PROMPTS = [[3, 4, 5, 6, 7], [9, 10], list(range(11, 30)), [40] * 7]
STEPS = 12


def _alone(model, prompt: list[int]) -> list[int]:  # noqa: ANN001
    batch = RowBatch(model, pad_id=0)
    tokens = batch.advance(admit=[(prompt, Sampling())])
    for _ in range(STEPS - 1):
        tokens += batch.advance()
    return tokens


def test_greedy_tokens_do_not_depend_on_the_rows_sharing_the_batch(random_tiny_llama):
    model = random_tiny_llama
    alone = [_alone(model, p) for p in PROMPTS]
    # Alone, the batch is transformers' own greedy generation, token for token.
    for prompt, tokens in zip(PROMPTS, alone, strict=True):
        reference = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=STEPS,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            top_k=None,
            top_p=None,
            temperature=None,
        )
        assert reference[0, len(prompt) :].tolist() == tokens

    # Mixed: prompts 0 and 1 start together (different lengths: left padding); 2 (the longest) joins at
    # step 3, a sampled row at step 4; 0 leaves at step 5 and the sampled one at 7; 3 joins at step 6.
    batch = RowBatch(model, pad_id=0)
    order: list[object] = [0, 1]
    got: dict[object, list[int]] = {0: [], 1: []}
    tokens = batch.advance(admit=[(PROMPTS[0], Sampling()), (PROMPTS[1], Sampling())])
    for step in range(1, 3 * STEPS):
        for name, token in zip(order, tokens, strict=True):
            got[name].append(token)
        drop = [order.index(name) for name in {5: [0], 7: ["sampled"]}.get(step, [])]
        order = [name for row, name in enumerate(order) if row not in drop]
        admit = {3: [2], 4: ["sampled"], 6: [3]}.get(step, [])
        for name in admit:
            got[name] = []
        tokens = batch.advance(
            drop=drop,
            admit=[
                ([1, 2, 3], Sampling(0.9, 0.8)) if name == "sampled" else (PROMPTS[name], Sampling())  # type: ignore[index]
                for name in admit
            ],
        )
        order += admit
        assert len(batch) == len(order)
    for name in range(4):
        n = min(STEPS, len(got[name]))
        assert got[name][:n] == alone[name][:n], f"prompt {name}"
    assert len(got[0]) == 5 and all(len(got[name]) >= STEPS for name in (1, 2, 3))
    # After 0 and the sampled row left, no cache column is padding in every row.
    assert bool(batch.mask[:, 0].any())


def _engine(batch_size: int) -> tuple[StandInEngine, StandInModel]:
    model = StandInModel(step_s=0.005)
    limits = ServeLimits(batch_size=batch_size, sequence_length=1000, max_new_tokens=500, batch_wait_ms=1)
    engine = StandInEngine(limits, StandInTokenizer(), model)
    engine.load()
    return engine, model


def test_a_short_request_returns_while_a_long_one_runs_and_a_new_one_joins():
    engine, model = _engine(batch_size=2)

    async def scenario() -> None:
        loop_task = asyncio.create_task(engine.batch_loop())
        await asyncio.sleep(0)
        long = asyncio.ensure_future(engine.submit([2], 400, 0.0, 1.0))
        short = await engine.submit([3], 3, 0.0, 1.0)
        # The short one is back after its own 3 tokens; with static batching it waited for all 400.
        assert short.completion_tokens == 3 and short.text == " ".join([str(GENERATED)] * 3)
        assert not long.done()
        steps_before = model.decode_steps
        joined = await engine.submit([4], 2, 0.7, 0.9)  # sampled rows share the batch with greedy ones
        assert joined.completion_tokens == 2 and not long.done()
        assert model.decode_steps - steps_before < 10  # it joined the running batch, not after it
        assert (await long).completion_tokens == 400
        loop_task.cancel()

    asyncio.run(scenario())
    # Prefills: [2]+[3] together, then [4] alone while [2] was running.
    assert [sorted(call["markers"]) for call in model.calls] == [[2, 3], [4]]


def test_the_batch_never_exceeds_batch_size_and_every_request_is_answered():
    engine, model = _engine(batch_size=2)

    async def scenario() -> list:
        loop_task = asyncio.create_task(engine.batch_loop())
        await asyncio.sleep(0)
        results = await asyncio.gather(*(engine.submit([10 + i], 2 + i, 0.0, 1.0) for i in range(5)))
        loop_task.cancel()
        return results

    results = asyncio.run(scenario())
    assert [r.completion_tokens for r in results] == [2, 3, 4, 5, 6]
    assert [r.finish_reason for r in results] == ["length"] * 5
    assert max(model.rows_per_call) == 2
    assert sorted(m for call in model.calls for m in call["markers"]) == [10, 11, 12, 13, 14]


def test_a_prompt_sharing_a_cached_prefix_prefills_only_the_rest_and_gets_the_same_tokens(random_tiny_llama):
    model = random_tiny_llama
    first, shares_4, same, fresh = (
        [5, 6, 7, 8, 9, 10, 11],
        [5, 6, 7, 8, 20, 21],
        [5, 6, 7, 8, 9, 10, 11],
        [33, 34],
    )
    alone = {tuple(p): _alone(model, p) for p in (first, shares_4, fresh)}
    seen: list[int] = []
    model_forward = model.forward

    def counting_forward(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(kwargs["input_ids"].shape[1])
        return model_forward(*args, **kwargs)

    batch = RowBatch(model, pad_id=0)
    model.forward = counting_forward
    try:
        got = [[t] for t in batch.advance(admit=[(first, Sampling())])]
        got[0] += batch.advance()
        # Three join at once: one shares 4 tokens with the cached prompt, one is that prompt again (all but
        # its last token reused), one shares nothing. The prefill runs on the longest remainder only.
        running, *joined = batch.advance(admit=[(p, Sampling()) for p in (shares_4, same, fresh)])
        got[0].append(running)
        got += [[t] for t in joined]
        for _ in range(STEPS - 1):
            for row, token in enumerate(batch.advance()):
                got[row].append(token)
    finally:
        model.forward = model_forward
    # Prefill of 7, a decode, then (decode before prefill) the shared prefill: max(6 - 4, 7 - 6, 2) = 2 tokens.
    assert seen[:4] == [7, 1, 1, 2]
    assert got[0][:STEPS] == alone[tuple(first)]
    assert got[1] == alone[tuple(shares_4)] and got[2] == alone[tuple(same)] and got[3] == alone[tuple(fresh)]
