"""Pack tokenized examples into fixed blocks of ``max_seq_length`` tokens: one input shape, always.

On Trainium every new input shape is a new graph and a multi-minute compile, and on any hardware
padding is wasted compute. Examples are placed best-fit-decreasing into blocks; the tail of each
block is padding with ``labels = -100``.

Attention must not cross example boundaries. ``position_ids`` restart at 0 for every example (and
for the padding tail), and the model is called with no 2-D attention mask: transformers (>= 4.53,
``masking_utils.find_packed_sequence_indices``) then derives a block-diagonal causal mask from the
position restarts. ``tests/test_packing.py`` checks this on a real model by perturbing one example
and asserting the logits of its neighbours do not move.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from training.tokenize import IGNORE_INDEX


@dataclass
class PackedBlocks:
    input_ids: np.ndarray  # [blocks, max_seq_length] int64
    labels: np.ndarray  # [blocks, max_seq_length] int64, IGNORE_INDEX where no loss
    position_ids: np.ndarray  # [blocks, max_seq_length] int64, restarting at each example
    real_per_block: np.ndarray  # [blocks] tokens that belong to examples (not padding)
    real_tokens: int  # tokens that belong to examples (not padding)
    target_tokens: int  # tokens that carry loss

    @property
    def num_blocks(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def block_length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def padding_fraction(self) -> float:
        total = self.input_ids.size
        return 1.0 - self.real_tokens / total if total else 0.0


def assign_to_blocks(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices of the examples in each block. Deterministic for equal inputs."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    blocks: list[list[int]] = []
    # Sorted (remaining capacity, block index) pairs; bisect finds the tightest block that fits.
    free: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"example {i} has {n} tokens, more than the block capacity {capacity}")
        pos = bisect.bisect_left(free, (n, -1))
        if pos == len(free):
            blocks.append([i])
            remaining, block = capacity - n, len(blocks) - 1
        else:
            remaining, block = free.pop(pos)
            blocks[block].append(i)
            remaining -= n
        if remaining > 0:
            bisect.insort(free, (remaining, block))
    return blocks


def pack_into_blocks(
    input_ids: list[list[int]], labels: list[list[int]], block_length: int, pad_token_id: int
) -> PackedBlocks:
    assignment = assign_to_blocks([len(x) for x in input_ids], block_length)
    n = len(assignment)
    ids = np.full((n, block_length), pad_token_id, dtype=np.int64)
    lab = np.full((n, block_length), IGNORE_INDEX, dtype=np.int64)
    pos = np.zeros((n, block_length), dtype=np.int64)
    real = np.zeros(n, dtype=np.int64)
    for b, members in enumerate(assignment):
        cursor = 0
        for i in members:
            k = len(input_ids[i])
            ids[b, cursor : cursor + k] = input_ids[i]
            lab[b, cursor : cursor + k] = labels[i]
            # The first token of an example has no context inside it; a loss there would be
            # predicted from the previous example, so it never carries one.
            lab[b, cursor] = IGNORE_INDEX
            pos[b, cursor : cursor + k] = np.arange(k)
            cursor += k
        real[b] = cursor
        # The padding tail gets its own restart so it forms a separate segment nobody attends to.
        pos[b, cursor:] = np.arange(block_length - cursor)
    return PackedBlocks(
        input_ids=ids,
        labels=lab,
        position_ids=pos,
        real_per_block=real,
        real_tokens=int(real.sum()),
        target_tokens=int((lab != IGNORE_INDEX).sum()),
    )
