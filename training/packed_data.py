"""Packed blocks on disk: what the pipeline's Prepare step writes and the fine-tune reads.

Tokenizing and packing once on a CPU instance means the Trainium job starts training at once and
never spends accelerator hours on tokenization. A packed channel is a folder with:

* ``packed_blocks.safetensors``: ``input_ids``, ``labels``, ``position_ids`` (``[blocks, block_length]``)
  and ``real_per_block`` (``[blocks]``), all int64;
* ``packed_meta.json``: the channel's statistics (``training.prepare``), the block length, the format
  version and a fingerprint of the tokenizer that produced the ids.

Reading refuses blocks of another length than ``max_seq_length`` and blocks made by another tokenizer:
both would train silently on wrong data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import UserError
from training.packing import PackedBlocks
from training.prepare import PreparedData
from training.tokenize import IGNORE_INDEX

BLOCKS_FILE = "packed_blocks.safetensors"
META_FILE = "packed_meta.json"
FORMAT_VERSION = 1
_ARRAYS = ("input_ids", "labels", "position_ids", "real_per_block")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the fast tokenizer's full serialization (vocabulary, merges, normalizers, added tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(
            "the base model's tokenizer is not a fast (Rust) tokenizer; save the model with a tokenizer.json"
        )
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


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
