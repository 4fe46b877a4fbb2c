"""Pack tokenized examples into fixed blocks of ``max_seq_length`` tokens: one input shape, always.

On Trainium every new input shape is a new graph and a multi-minute compile, and on any hardware
padding is wasted compute. Examples are placed best-fit-decreasing into blocks; the tail of each
block is padding with ``labels = -100``.

Attention must not cross example boundaries. ``position_ids`` restart at 0 for every example (and
for the padding tail), and the model is called with no 2-D attention mask: transformers (>= 4.53,
``masking_utils.find_packed_sequence_indices``) then derives a block-diagonal causal mask from the
position restarts. ``tests/test_packing.py`` checks this on a real model by perturbing one example
and asserting the logits of its neighbours do not move.

Packed blocks on disk: what the pipeline's Prepare step writes and the fine-tune reads. Tokenizing
and packing once on a CPU instance means the Trainium job starts training at once and never spends
accelerator hours on tokenization. A packed channel is a folder with:

* ``packed_blocks.safetensors``: ``input_ids``, ``labels``, ``position_ids`` (``[blocks, block_length]``)
  and ``real_per_block`` (``[blocks]``), all int64;
* ``packed_meta.json``: the channel's statistics (``training.prepare``), the block length, the format
  version and a fingerprint of the tokenizer that produced the ids.

Reading refuses blocks of another length than ``max_seq_length`` and blocks made by another tokenizer:
both would train silently on wrong data.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import UserError
from training.fingerprints import tokenizer_fingerprint
from training.tokenize import IGNORE_INDEX

BLOCKS_FILE = "packed_blocks.safetensors"
META_FILE = "packed_meta.json"
FORMAT_VERSION = 1
_ARRAYS = ("input_ids", "labels", "position_ids", "real_per_block")


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


@dataclass
class PreparedData:
    """One channel, packed, with its statistics (``training.prepare``; stored in ``packed_meta.json``)."""

    blocks: PackedBlocks
    stats: dict[str, Any]


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


# ---- on disk: the Prepare step's output ---------------------------------------------------------


def is_packed(folder: Path) -> bool:
    return folder.is_dir() and (folder / BLOCKS_FILE).is_file()


def save_packed(folder: Path, prepared: PreparedData, tokenizer: Any) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    blocks = prepared.blocks
    save_file(
        {name: np.ascontiguousarray(getattr(blocks, name), dtype=np.int64) for name in _ARRAYS},
        str(folder / BLOCKS_FILE),
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "block_length": blocks.block_length,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "stats": prepared.stats,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load_packed(folder: Path, channel: str, max_seq_length: int, tokenizer: Any) -> PreparedData:
    from safetensors.numpy import load_file

    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{channel} channel {folder} holds {BLOCKS_FILE} but {META_FILE} is unreadable ({exc}); "
            "rerun the Prepare step"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this code reads "
            f"{FORMAT_VERSION}; rerun the Prepare step with the same image as the fine-tune"
        )
    if meta.get("block_length") != max_seq_length:
        raise UserError(
            f"{channel} channel {folder} was packed into blocks of {meta.get('block_length')} tokens but "
            f"max_seq_length={max_seq_length}; rerun Prepare with --max-seq-length {max_seq_length} or set "
            f"max_seq_length={meta.get('block_length')}"
        )
    if meta.get("tokenizer_sha256") != tokenizer_fingerprint(tokenizer):
        raise UserError(
            f"{channel} channel {folder} was tokenized with another tokenizer than the base model's; the token ids "
            "would mean other words. Run Prepare with the same base model as the fine-tune"
        )
    arrays = load_file(str(folder / BLOCKS_FILE))
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise UserError(f"{folder / BLOCKS_FILE} lacks {', '.join(missing)}; rerun the Prepare step")
    labels = arrays["labels"]
    blocks = PackedBlocks(
        input_ids=arrays["input_ids"],
        labels=labels,
        position_ids=arrays["position_ids"],
        real_per_block=arrays["real_per_block"],
        real_tokens=int(arrays["real_per_block"].sum()),
        target_tokens=int((labels != IGNORE_INDEX).sum()),
    )
    if blocks.input_ids.shape != labels.shape or blocks.block_length != max_seq_length:
        raise UserError(
            f"{folder / BLOCKS_FILE} has inconsistent shapes {blocks.input_ids.shape} / {labels.shape}; "
            "rerun the Prepare step"
        )
    stats = dict(meta.get("stats", {}), packed_by="prepare step", packed_folder=str(folder))
    return PreparedData(blocks=blocks, stats=stats)
