"""The hashes that name what a job worked on: the base model folder, the tokenizer, the raw data.

Light on purpose (hashlib only): the local pipeline runner and the container entrypoint import it
without pulling in torch or datasets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from training.errors import UserError


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


# Call-time settings, not identity: a call with truncation=True or padding stores them on the Rust
# tokenizer (transformers' set_truncation_and_padding), and its serialization then shows them.
CALL_SETTINGS = ("truncation", "padding")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the fast tokenizer's serialization (vocabulary, merges, normalizers, added tokens),
    without the truncation and padding a previous call left on it."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(
            "the base model's tokenizer is not a fast (Rust) tokenizer; save the model with a tokenizer.json"
        )
    serialized = json.loads(backend.to_str())
    for key in CALL_SETTINGS:
        serialized.pop(key, None)
    return hashlib.sha256(json.dumps(serialized, sort_keys=True).encode()).hexdigest()


def content_sha256(files: list[Path]) -> str:
    """sha256 of the files' contents, concatenated in the order given (a channel's raw JSONL)."""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:  # in chunks: memory stays flat whatever the file's size
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
