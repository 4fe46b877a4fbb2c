"""From a JSONL channel to packed blocks: validate, tokenize with the chat template, check lengths, pack.

Shared by training (train and validation channels) and the pipeline's Prepare step
(``training/prepare_step.py``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from training.data import MAX_REPORTED, load_examples
from training.errors import UserError, format_problems
from training.packing import PackedBlocks, pack_into_blocks
from training.tokenize import IGNORE_INDEX, tokenize_example

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    blocks: PackedBlocks
    stats: dict[str, Any]


def _content_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def prepare_for_training(tokenizer: Any, path: Path, channel: str, hp: Any) -> PreparedData:
    """``prepare_channel`` with the length and skipping policy from the training hyperparameters.

    A channel the pipeline's Prepare step already packed (``training.packed_data``) is read as is.
    """
    from training.packed_data import is_packed, load_packed

    if is_packed(path):
        log.info("%s channel %s is already packed (Prepare step): no tokenization here", channel, path)
        return load_packed(path, channel, hp.max_seq_length, tokenizer)
    return prepare_channel(
        tokenizer,
        path,
        channel=channel,
        max_seq_length=hp.max_seq_length,
        overlong=hp.overlong,
        skip_invalid_lines=hp.skip_invalid_lines,
    )


def prepare_channel(
    tokenizer: Any,
    path: Path,
    *,
    channel: str,
    max_seq_length: int,
    overlong: str,
    skip_invalid_lines: bool,
) -> PreparedData:
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            "the base model's tokenizer is not a fast (Rust) tokenizer; the loss mask needs its offset mapping. "
            "Save the model with a tokenizer.json"
        )
    loaded = load_examples(path, channel=channel, skip_invalid=skip_invalid_lines)
    dataset = Dataset.from_list(loaded.examples)
    tokenized = dataset.map(
        lambda ex: tokenize_example(tokenizer, ex),
        remove_columns=["messages", "prompt", "completion"],
        desc=f"tokenizing {channel}",
    )

    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    too_long: list[str] = []
    truncated = 0
    no_target_after_truncation: list[str] = []
    for row in tokenized:
        ids, lab = row["input_ids"], row["labels"]
        if len(ids) > max_seq_length:
            if overlong == "reject":
                too_long.append(
                    f"{row['source']}: {len(ids)} tokens, longer than max_seq_length={max_seq_length}"
                )
                continue
            ids, lab = ids[:max_seq_length], lab[:max_seq_length]
            truncated += 1
            if all(t == IGNORE_INDEX for t in lab):
                no_target_after_truncation.append(row["source"])
                continue
        input_ids.append(ids)
        labels.append(lab)

    if too_long:
        raise UserError(
            format_problems(
                f"{channel} data has {len(too_long)} example(s) longer than max_seq_length; raise max_seq_length, "
                "shorten them, or set overlong=truncate:",
                too_long,
                MAX_REPORTED,
            )
        )
    if no_target_after_truncation:
        log.warning(
            format_problems(
                f"dropped {len(no_target_after_truncation)} {channel} example(s) whose assistant text lies "
                f"entirely beyond max_seq_length={max_seq_length}:",
                no_target_after_truncation,
                MAX_REPORTED,
            )
        )
    if not input_ids:
        raise UserError(f"{channel} data at {path}: no example left to train on after length checks")

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise UserError(
            "the tokenizer defines neither a pad token nor an EOS token; set one in tokenizer_config.json"
        )
    blocks = pack_into_blocks(input_ids, labels, max_seq_length, pad_id)
    stats = {
        "channel": channel,
        "files": [str(f) for f in loaded.files],
        "content_sha256": _content_hash(loaded.files),
        "examples": len(input_ids),
        "skipped_invalid_lines": len(loaded.skipped),
        "truncated_examples": truncated,
        "dropped_examples": len(no_target_after_truncation),
        "real_tokens": blocks.real_tokens,
        "target_tokens": blocks.target_tokens,
        "blocks": blocks.num_blocks,
        "block_length": blocks.block_length,
        "padding_fraction": round(blocks.padding_fraction, 6),
    }
    log.info(
        "%s data: %d examples, %d real tokens packed into %d blocks of %d (padding %.1f%%)",
        channel,
        stats["examples"],
        blocks.real_tokens,
        blocks.num_blocks,
        max_seq_length,
        100 * blocks.padding_fraction,
    )
    return PreparedData(blocks=blocks, stats=stats)
