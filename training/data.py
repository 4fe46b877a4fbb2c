"""Load and validate JSONL training data, one example per line.

Two line formats are accepted:

* chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`` with at
  least one assistant message (the tokens the model learns to produce);
* ``{"prompt": "...", "completion": "..."}``.

Every bad line is reported as ``file:line: reason``; nothing is skipped silently. Blank lines are
not examples and are ignored (a trailing newline is not an error).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.errors import UserError, format_problems

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
MAX_REPORTED = 20


@dataclass
class LoadedData:
    examples: list[dict[str, Any]]
    files: list[Path]
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of lines skipped on request


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return '"messages" must be a non-empty list of {"role", "content"} objects'
    assistant_turns = 0
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return f'messages[{i}] must be an object with "role" and "content"'
        unknown = set(msg) - {"role", "content"}
        if unknown:
            return f"messages[{i}] has unknown keys {sorted(unknown)}; only role and content are allowed"
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            return f"messages[{i}].role is {role!r}; allowed: {', '.join(ROLES)}"
        if role == "system" and i != 0:
            return f"messages[{i}] is a system message; a system message may only come first"
        if not isinstance(content, str) or not content.strip():
            return f"messages[{i}].content must be a non-empty string"
        assistant_turns += role == "assistant"
    if assistant_turns == 0:
        return "no assistant message: there is nothing for the model to learn from this example"
    return None


def _validate_record(record: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(normalized example, None) or (None, reason)."""
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    has_chat = "messages" in record
    has_pc = "prompt" in record or "completion" in record
    if has_chat and has_pc:
        return None, 'has both "messages" and "prompt"/"completion"; use one format per line'
    if has_chat:
        problem = _check_messages(record["messages"])
        if problem:
            return None, problem
        return {"messages": record["messages"], "prompt": None, "completion": None}, None
    if has_pc:
        for key in ("prompt", "completion"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                return None, f'"{key}" must be a non-empty string'
        return {"messages": None, "prompt": record["prompt"], "completion": record["completion"]}, None
    keys = ", ".join(sorted(record)) or "none"
    return None, f'neither "messages" nor "prompt"/"completion" found (keys: {keys})'


def _iter_jsonl_files(path: Path, channel: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{channel} data not found at {path}; give a .jsonl file or a folder of them")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json"))
    if not files:
        present = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
        raise UserError(f"{path}: no .jsonl files in the {channel} channel (found: {present})")
    return files


def load_examples(path: Path, channel: str = "train", skip_invalid: bool = False) -> LoadedData:
    """Read every line of every JSONL file under ``path``; raise once listing every bad line."""
    files = _iter_jsonl_files(path, channel)
    examples: list[dict[str, Any]] = []
    problems: list[str] = []
    for file in files:
        raw = file.read_bytes()
        if not raw.strip():
            problems.append(f"{file}: the file is empty; it needs at least one example per line")
            continue
        for lineno, line_bytes in enumerate(raw.split(b"\n"), start=1):
            where = f"{file}:{lineno}"
            if lineno == 1 and line_bytes.startswith(b"\xef\xbb\xbf"):
                line_bytes = line_bytes[3:]  # a UTF-8 byte-order mark is harmless
            try:
                line = line_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(
                    f"{where}: not valid UTF-8 (byte 0x{line_bytes[exc.start]:02x} at column {exc.start + 1});"
                    " re-save the file as UTF-8"
                )
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            example, reason = _validate_record(record)
            if reason:
                problems.append(f"{where}: {reason}")
                continue
            assert example is not None
            example["source"] = where
            examples.append(example)

    if problems and not skip_invalid:
        raise UserError(
            format_problems(
                f"{channel} data has {len(problems)} invalid line(s); fix them, or set the hyperparameter "
                "skip_invalid_lines=true to skip and count them:",
                problems,
                MAX_REPORTED,
            )
        )
    if problems:
        log.warning(
            format_problems(f"skipping {len(problems)} invalid {channel} line(s):", problems, MAX_REPORTED)
        )
    if not examples:
        raise UserError(f"{channel} data at {path} holds no valid examples")
    return LoadedData(examples=examples, files=files, skipped=problems)
