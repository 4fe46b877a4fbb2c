"""From a JSONL channel to packed blocks: validate, tokenize with the chat template, check lengths, pack.

Shared by training (train and validation channels), evaluation, and the pipeline's Prepare step
(``run_prepare``), which validates, tokenizes and packs once, on a CPU instance. Prepare follows the
same rules as training (``prepare_channel``: every bad line reported with ``file:line``, the same
length policy), so a dataset that passes Prepare cannot fail the fine-tune on its data. It writes
three folders under the output root, matching the step's processing outputs:

* ``packed_train/`` and ``packed_validation/`` (``training.packing``, on disk), which the fine-tune
  reads as its ``train`` and ``validation`` channels without tokenizing;
* ``stats/data_stats.json``: examples, tokens, dropped lines, padding fraction per channel and in
  total; ``content_sha256``, a hash of the raw JSONL contents that the registered model carries; and
  ``base_model_sha256``, the base model folder's hash. The fine-tune's checkpoint prefix is keyed by both.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from training.data import MAX_REPORTED, load_examples
from training.errors import UserError, format_problems
from training.fingerprints import content_sha256, tokenizer_fingerprint
from training.packing import PreparedData, is_packed, load_packed, pack_into_blocks, save_packed
from training.tokenize import IGNORE_INDEX, longest_token_chars, tokenize_example

log = logging.getLogger(__name__)

STATS_FILE = "data_stats.json"


@dataclass(frozen=True)
class PrepareSettings:
    max_seq_length: int
    overlong: str = "reject"
    skip_invalid_lines: bool = False


def prepare_for_training(tokenizer: Any, path: Path, channel: str, hp: Any) -> PreparedData:
    """``prepare_channel`` with the length and skipping policy from the training hyperparameters.

    A channel the pipeline's Prepare step already packed (``training.packing.save_packed``) is read as is.
    """
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
    # Each line's memory is bounded by max_seq_length, not by the input: lines too long to hold an example
    # that fits are refused unread, and each example is tokenized only as far as the length policy
    # needs. The channel's memory still grows with the number of examples (kept until packed).
    chars_per_token = longest_token_chars(tokenizer)
    loaded = load_examples(
        path,
        channel=channel,
        skip_invalid=skip_invalid_lines,
        max_seq_length=max_seq_length,
        chars_per_token=chars_per_token,
    )
    dataset = Dataset.from_list(loaded.examples)
    tokenized = dataset.map(
        lambda ex: tokenize_example(
            tokenizer, ex, max_tokens=max_seq_length, chars_per_token=chars_per_token
        ),
        remove_columns=["messages", "prompt", "completion"],
        desc=f"tokenizing {channel}",
    )

    fitted = _fit_to_length(tokenized, channel, max_seq_length, overlong)
    if not fitted.input_ids:
        raise UserError(f"{channel} data at {path}: no example left to train on after length checks")

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise UserError(
            "the tokenizer defines neither a pad token nor an EOS token; set one in tokenizer_config.json"
        )
    blocks = pack_into_blocks(fitted.input_ids, fitted.labels, max_seq_length, pad_id)
    stats = {
        "channel": channel,
        "files": [str(f) for f in loaded.files],
        "records_per_file": loaded.records,
        "content_sha256": content_sha256(loaded.files),
        "examples": len(fitted.input_ids),
        "skipped_invalid_lines": len(loaded.skipped),
        "truncated_examples": fitted.truncated,
        "dropped_examples": len(fitted.dropped),
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


@dataclass
class _Fitted:
    """Tokenized examples after the length policy."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int  # examples cut to max_seq_length
    dropped: list[str]  # sources of truncated examples with no target token left


def _fit_to_length(tokenized: Any, channel: str, max_seq_length: int, overlong: str) -> _Fitted:
    """Apply ``overlong``: every example longer than a block is refused (reject, all reported at once)
    or cut to it (truncate; dropped, with a warning, when no assistant token survives the cut)."""
    fitted = _Fitted(input_ids=[], labels=[], truncated=0, dropped=[])
    too_long: list[str] = []
    for row in tokenized:
        ids, lab = row["input_ids"], row["labels"]
        # Tokens are counted only up to max_seq_length + 1 (training.tokenize), so "longer" is all we know.
        if len(ids) > max_seq_length or row["cut"]:
            if overlong == "reject":
                too_long.append(
                    f"{row['source']}: {row['chars']:,} characters, longer than max_seq_length={max_seq_length} tokens"
                )
                continue
            ids, lab = ids[:max_seq_length], lab[:max_seq_length]
            fitted.truncated += 1
            if all(t == IGNORE_INDEX for t in lab):
                fitted.dropped.append(row["source"])
                continue
        fitted.input_ids.append(ids)
        fitted.labels.append(lab)

    if too_long:
        raise UserError(
            format_problems(
                f"{channel} data has {len(too_long)} example(s) longer than max_seq_length; raise max_seq_length, "
                "shorten them, or set overlong=truncate:",
                too_long,
                MAX_REPORTED,
            )
        )
    if fitted.dropped:
        log.warning(
            format_problems(
                f"dropped {len(fitted.dropped)} {channel} example(s) whose assistant text lies "
                f"entirely beyond max_seq_length={max_seq_length}:",
                fitted.dropped,
                MAX_REPORTED,
            )
        )
    return fitted


# ---- the pipeline's Prepare step ------------------------------------------------------------------


def data_stats(
    train: PreparedData,
    validation: PreparedData | None,
    tokenizer: Any,
    settings: PrepareSettings,
    base_model_sha256: str,
) -> dict[str, Any]:
    channels = {"train": train.stats} | ({"validation": validation.stats} if validation else {})
    # The data's identity: the raw contents of each channel, named, so swapping train and validation
    # changes the hash. Tokenizer and block length are recorded next to it, not mixed in.
    digest = hashlib.sha256()
    for name, stats in channels.items():
        digest.update(f"{name}:{stats['content_sha256']}\n".encode())
    total_slots = sum(s["blocks"] * s["block_length"] for s in channels.values())
    real = sum(s["real_tokens"] for s in channels.values())
    return {
        "content_sha256": digest.hexdigest(),
        "examples": sum(s["examples"] for s in channels.values()),
        "tokens": real,
        "target_tokens": sum(s["target_tokens"] for s in channels.values()),
        "dropped": sum(s["dropped_examples"] + s["skipped_invalid_lines"] for s in channels.values()),
        "truncated": sum(s["truncated_examples"] for s in channels.values()),
        "blocks": sum(s["blocks"] for s in channels.values()),
        "padding_fraction": round(1 - real / total_slots, 6) if total_slots else 0.0,
        "max_seq_length": settings.max_seq_length,
        "overlong": settings.overlong,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "base_model_sha256": base_model_sha256,
        "channels": channels,
    }


def run_prepare(
    train: Path,
    validation: Path | None,
    tokenizer: Any,
    output_root: Path,
    settings: PrepareSettings,
    base_model_sha256: str,
) -> dict[str, Any]:
    def channel(path: Path, name: str) -> PreparedData:
        return prepare_channel(
            tokenizer,
            path,
            channel=name,
            max_seq_length=settings.max_seq_length,
            overlong=settings.overlong,
            skip_invalid_lines=settings.skip_invalid_lines,
        )

    train_data = channel(train, "train")
    validation_data = channel(validation, "validation") if validation is not None else None
    save_packed(output_root / "packed_train", train_data, tokenizer)
    # Always create the folder: the processing output is declared, and an empty prefix is honest.
    (output_root / "packed_validation").mkdir(parents=True, exist_ok=True)
    if validation_data is not None:
        save_packed(output_root / "packed_validation", validation_data, tokenizer)
    stats = data_stats(train_data, validation_data, tokenizer, settings, base_model_sha256)
    (output_root / "stats").mkdir(parents=True, exist_ok=True)
    (output_root / "stats" / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    log.info(
        "prepared %d examples, %d tokens in %d blocks of %d (padding %.1f%%), %d dropped; data sha256 %s",
        stats["examples"],
        stats["tokens"],
        stats["blocks"],
        settings.max_seq_length,
        100 * stats["padding_fraction"],
        stats["dropped"],
        stats["content_sha256"][:12],
    )
    return stats
