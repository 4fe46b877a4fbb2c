"""The batching loop: requests that arrive together share one generate call, never more than batch_size."""

import asyncio
from pathlib import Path

from inference.generation import Generated
from inference.server import Engine, ServeLimits


def test_concurrent_requests_are_batched_up_to_the_limit(monkeypatch):
    calls = []

    def fake_generate(
        model, tokenizer, prompts, shape, max_new_tokens, temperature, top_p, fill_batch, should_stop
    ):
        assert not any(should_stop(i) for i in range(len(prompts)))  # nobody left, nothing is stopping
        calls.append(
            {"n": len(prompts), "shape": shape, "limits": max_new_tokens, "temperature": temperature}
        )
        return [
            Generated(
                text=f"out{len(p)}", prompt_tokens=len(p), completion_tokens=lim, finish_reason="length"
            )
            for p, lim in zip(prompts, max_new_tokens, strict=True)
        ]

    monkeypatch.setattr("inference.server.generate", fake_generate)
    engine = Engine(
        Path("."), ServeLimits(batch_size=4, sequence_length=64, max_new_tokens=8, batch_wait_ms=50), "m"
    )

    async def scenario():
        loop_task = asyncio.create_task(engine.batch_loop())
        await asyncio.sleep(0)
        greedy = [engine.submit([1] * (i + 1), 2 + i, 0.0, 1.0) for i in range(5)]
        sampled = [engine.submit([7, 7], 3, 0.7, 0.9)]
        results = await asyncio.gather(*greedy, *sampled)
        loop_task.cancel()
        return results

    results = asyncio.run(scenario())
    assert [r.text for r in results] == ["out1", "out2", "out3", "out4", "out5", "out2"]
    assert [r.completion_tokens for r in results] == [2, 3, 4, 5, 6, 3]
    # 6 requests, batch_size 4: the first batch is full; greedy and sampled requests never share a call.
    assert calls[0]["n"] == 4 and calls[0]["temperature"] == 0.0
    assert sum(c["n"] for c in calls) == 6 and all(c["n"] <= 4 for c in calls)
    assert [c["limits"] for c in calls if c["temperature"] == 0.7] == [[3]]
    # The prefill length is the batch's longest prompt rounded up to 16, within sequence_length.
    assert calls[0]["shape"].prompt_length == 16 and calls[0]["shape"].max_new_tokens == 5
