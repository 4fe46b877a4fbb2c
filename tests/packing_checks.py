"""A check shared by the Llama and Qwen3 tests: packed examples do not see each other."""

from __future__ import annotations

from typing import Any


def assert_packed_examples_do_not_attend_to_each_other(model: Any) -> None:
    """Two examples packed into one block with restarting position ids: changing every token of the
    one placed first must not move the second one's logits, and must move its own."""
    import torch

    from training.packing import pack_into_blocks

    a, b = [3, 4, 5, 6], [7, 8, 9]
    blocks = pack_into_blocks([a, b], [a, b], 10, pad_token_id=0)
    ids = torch.from_numpy(blocks.input_ids)
    pos = torch.from_numpy(blocks.position_ids)
    first = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    changed = ids.clone()
    n_first = len(a) if int(ids[0, 0]) == 3 else len(b)
    changed[0, :n_first] = 11
    second = model(input_ids=changed, position_ids=pos, use_cache=False).logits
    assert torch.allclose(first[0, n_first:], second[0, n_first:], atol=1e-5)
    assert not torch.allclose(first[0, :n_first], second[0, :n_first])
