"""The pipeline's Prepare step: validate, tokenize and pack once, on a CPU instance.

Same rules as training (``training.prepare.prepare_channel``: every bad line reported with
``file:line``, the same length policy), so a dataset that passes Prepare cannot fail the fine-tune
on its data. Writes three folders under the output root, matching the step's processing outputs:

* ``packed_train/`` and ``packed_validation/`` (``training.packed_data``), which the fine-tune reads
  as its ``train`` and ``validation`` channels without tokenizing;
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

from training.packed_data import save_packed, tokenizer_fingerprint
from training.prepare import PreparedData, prepare_channel

log = logging.getLogger(__name__)

STATS_FILE = "data_stats.json"
OUTPUTS = ("packed_train", "packed_validation", "stats")


@dataclass(frozen=True)
class PrepareSettings:
    max_seq_length: int
    overlong: str = "reject"
    skip_invalid_lines: bool = False


def folder_sha256(folder: Path) -> str:
    """sha256 over every file of a model folder (relative names and contents, in a fixed order); a
    single file hashes as a folder holding just it.

    The identity of the base model: the fine-tune's checkpoints are keyed by it, and two models that
    share a tokenizer and a config (sizes, or a re-trained checkpoint) must not share checkpoints.
    Streaming, ~1 GB/s: seconds for billions of parameters.
    """
    digest = hashlib.sha256()
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        name = path.name if path == folder else str(path.relative_to(folder))
        digest.update(name.encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


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
