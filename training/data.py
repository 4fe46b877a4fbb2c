"""Load and validate JSONL training data, one example per line.

Two line formats are accepted:

* chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`` with at
  least one assistant message (the tokens the model learns to produce);
* ``{"prompt": "...", "completion": "..."}``.

Every bad line is reported as ``file:line: reason``; nothing is skipped silently. Blank lines are
not examples and are ignored (a trailing newline is not an error).

A channel is a file or a folder. In a folder, every ``.jsonl``/``.json`` file is read, and
``.jsonl.gz``/``.json.gz`` through gzip; anything under a hidden name (a path part starting with
``.``, such as ``.ipynb_checkpoints/``) is skipped, and the files read, with their record counts, are
logged. A file whose first bytes say it is something else (gzip under a ``.jsonl`` name, Parquet,
zip, UTF-16) is refused with the format found and what to do.

Memory is bounded by the length limit, not by the input: files are streamed line by line, and a
line longer than ``max_line_bytes(max_seq_length, ...)`` is refused (``file:line``, its size) without
ever being held in memory. One 50 MB line once cost 12 GB in tokenization before it was rejected.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.bounds import MAX_SEQ_LENGTH
from training.errors import UserError, format_problems

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
_A_JSON_ARRAY = "a JSON array; JSONL holds one object per line (jq -c '.[]' turns an array into JSONL)"
MAX_REPORTED = 20

PLAIN_SUFFIXES = (".jsonl", ".json")
GZIP_SUFFIXES = (".jsonl.gz", ".json.gz")

# ---- the line-length bound ------------------------------------------------------------------------
# An example that fits in N tokens renders to at most N * L characters, where L is the longest token
# of the vocabulary (a byte-level BPE token covers at most L bytes, so at most L characters; SmolLM2's
# longest is 81, a newline and 80 spaces). In the JSONL line a character costs at most 6 bytes (a
# "\uXXXX" escape, which json.dumps writes for every non-ASCII character by default). So a line over
# N * L * 6 bytes, plus MIN_LINE_BYTES for the JSON around the text (keys, roles, spaces), holds an
# example that cannot fit. The bound is generous on purpose: truncation (overlong=truncate) should
# still see long documents, and reading a line costs a few times its size, not the ~100x that
# tokenizing it does. No line under MIN_LINE_BYTES is ever refused.
DEFAULT_CHARS_PER_TOKEN = 128  # when no tokenizer is at hand: above the longest token of common vocabularies
JSON_BYTES_PER_CHAR = 6
MIN_LINE_BYTES = 1 << 20
# Callers that read data without a length limit (a smoke request, a benchmark) still never hold more:
# The largest max_seq_length (training/bounds.py), times the bounds above.
NO_LENGTH_GIVEN_LINE_BYTES = MAX_SEQ_LENGTH * DEFAULT_CHARS_PER_TOKEN * JSON_BYTES_PER_CHAR + MIN_LINE_BYTES
_SKIP_CHUNK = 1 << 16  # read size while skipping the rest of an oversized line

# First bytes of formats that are given as JSONL by mistake, and what to do about each. A JSONL file
# starts with "{" (or whitespace, or a UTF-8 byte-order mark), so none of these is ambiguous.
_CONVERT_PARQUET = (
    'convert it to JSONL, e.g. python -c "import datasets; '
    "datasets.Dataset.from_parquet('IN.parquet').to_json('OUT.jsonl')\""
)
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data", "name it *.jsonl.gz to have it read through gzip, or gunzip it"),
    (b"PAR1", "a Parquet file", _CONVERT_PARQUET),
    (b"PK\x03\x04", "a zip archive", "unzip it and give the .jsonl files inside"),
    (b"ARROW1", "an Arrow file", "convert it to JSONL (datasets.Dataset.from_file(...).to_json(...))"),
    (b"BZh", "bzip2-compressed data", "decompress it (bunzip2); only gzip is read compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed data", "decompress it (unxz); only gzip is read compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", "decompress it (unzstd); only gzip is read compressed"),
    (b"\xff\xfe\x00\x00", "UTF-32 text", "re-save it as UTF-8 (iconv -f UTF-32 -t UTF-8)"),
    (b"\x00\x00\xfe\xff", "UTF-32 text", "re-save it as UTF-8 (iconv -f UTF-32 -t UTF-8)"),
    (b"\xff\xfe", "UTF-16 text", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8)"),
    (b"\xfe\xff", "UTF-16 text", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8)"),
)


def max_line_bytes(max_seq_length: int | None, chars_per_token: int = DEFAULT_CHARS_PER_TOKEN) -> int:
    """The longest JSONL line read for an example of at most ``max_seq_length`` tokens (see above)."""
    if max_seq_length is None:
        return NO_LENGTH_GIVEN_LINE_BYTES
    return max_seq_length * chars_per_token * JSON_BYTES_PER_CHAR + MIN_LINE_BYTES


@dataclass
class LoadedData:
    examples: list[dict[str, Any]]
    files: list[Path]
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of lines skipped on request
    records: dict[str, int] = field(default_factory=dict)  # file -> non-blank lines read from it


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
    if isinstance(record, list):
        return None, f"expected a JSON object, got {_A_JSON_ARRAY}"
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


# ---- which files a channel holds ------------------------------------------------------------------


def _is_data_file(name: str) -> bool:
    return name.lower().endswith(PLAIN_SUFFIXES + GZIP_SUFFIXES)


@dataclass
class _Listing:
    files: list[Path]
    hidden: list[str]  # hidden files and folders skipped, relative to the channel
    ignored: list[str]  # other files that are not data, relative to the channel


def _list_channel(path: Path) -> _Listing:
    """Data files under a folder, in a fixed order; hidden folders are pruned, not walked.

    Only names below ``path`` count as hidden: the channel itself may live under a hidden folder
    (``.mlops/s3/...``).
    """
    listing = _Listing(files=[], hidden=[], ignored=[])
    for folder, dirnames, filenames in os.walk(path):
        here = Path(folder)
        for name in sorted(dirnames):
            if name.startswith("."):
                listing.hidden.append(f"{(here / name).relative_to(path)}/")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            relative = str((here / name).relative_to(path))
            if name.startswith("."):
                listing.hidden.append(relative)
            elif _is_data_file(name):
                listing.files.append(here / name)
            else:
                listing.ignored.append(relative)
    return listing


def _channel_files(path: Path, channel: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{channel} data not found at {path}; give a .jsonl file or a folder of them")
    listing = _list_channel(path)
    if listing.hidden:
        log.info("%s channel %s: skipped hidden %s", channel, path, _some(listing.hidden))
    if listing.ignored:
        log.warning(
            "%s channel %s: ignored %s (not %s)",
            channel,
            path,
            _some(listing.ignored),
            ", ".join(PLAIN_SUFFIXES + GZIP_SUFFIXES),
        )
    if not listing.files:
        present = _some(listing.ignored + listing.hidden) or "nothing"
        raise UserError(
            f"{path}: no .jsonl, .json, .jsonl.gz or .json.gz files in the {channel} channel (found: {present}; "
            "hidden names, starting with '.', are skipped)"
        )
    return listing.files


def _some(names: list[str], cap: int = MAX_REPORTED) -> str:
    more = f" and {len(names) - cap} more" if len(names) > cap else ""
    return ", ".join(names[:cap]) + more


# ---- opening a file: gzip or plain, after checking what it really is -------------------------------


def _sniff(head: bytes) -> tuple[str, str] | None:
    """(format found, what to do) when ``head`` is the start of something that is not UTF-8 JSONL."""
    for magic, found, advice in _SIGNATURES:
        if head.startswith(magic):
            return found, advice
    # JSON text never holds a NUL byte, so one among the first two is UTF-16 without a byte-order mark.
    if len(head) >= 2 and b"\x00" in head[:2]:
        return "UTF-16 text (no byte-order mark)", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8)"
    return None


def _open_checked(file: Path) -> io.BufferedIOBase:
    """A binary stream of the file's JSONL bytes (through gzip for ``*.gz``), or a UserError that
    names the format actually found and what to do."""
    try:
        with file.open("rb") as raw:
            head = raw.read(8)
    except OSError as exc:
        raise UserError(f"{file}: cannot be read ({exc.strerror}); check its permissions") from None
    found = _sniff(head)
    if not file.name.lower().endswith(".gz"):
        if found:
            raise UserError(f"{file}: this is {found[0]}, not JSONL text; {found[1]}")
        return file.open("rb")
    if not head.startswith(b"\x1f\x8b"):
        what = found[0] if found else "empty" if not head else "not gzip-compressed"
        raise UserError(
            f"{file}: named .gz but is {what}; give it its real name (without .gz for plain JSONL) or gzip it"
        )
    stream = gzip.open(file, "rb")
    try:
        inner = _sniff(stream.peek(8)[:8])
    except (OSError, EOFError, zlib.error) as exc:
        stream.close()
        raise UserError(f"{file}: the gzip stream is corrupt ({exc}); re-create or re-upload it") from None
    if inner:
        stream.close()
        raise UserError(f"{file}: the gzip stream holds {inner[0]}, not JSONL text; {inner[1]}")
    return stream


def _lines(stream: io.BufferedIOBase, limit: int) -> Iterator[tuple[int, bytes | int]]:
    """(line number, line without its newline) for each line; (line number, size in bytes) for a line
    over ``limit`` bytes, which is skipped in chunks, never held whole."""
    lineno = 0
    while chunk := stream.readline(limit + 1):
        lineno += 1
        if chunk.endswith(b"\n"):
            yield lineno, chunk[:-1]
        elif len(chunk) <= limit:
            yield lineno, chunk  # the last line, with no newline
        else:
            size = len(chunk)
            del chunk  # hold at most one chunk of an oversized line
            while (rest := stream.readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
                size += len(rest)
            size += len(rest.rstrip(b"\n"))
            yield lineno, size


# ---- reading and validating ------------------------------------------------------------------------


@dataclass
class _Reader:
    """What reading a channel found: examples, line problems (skippable) and unreadable files (never)."""

    limit: int
    max_seq_length: int | None
    examples: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)

    def read_file(self, file: Path) -> None:
        try:
            stream = _open_checked(file)
        except UserError as exc:
            self.unreadable.append(str(exc))
            return
        records = 0
        lineno = 0
        try:
            with stream:
                for lineno, line in _lines(stream, self.limit):
                    records += self.read_line(f"{file}:{lineno}", lineno, line)
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; a truncated gzip stream ends in EOFError.
            what = "the gzip stream is corrupt" if file.name.lower().endswith(".gz") else "reading failed"
            self.unreadable.append(f"{file}: {what} after line {lineno} ({exc}); re-create or re-upload it")
            return
        self.records[str(file)] = records
        if records == 0:
            self.problems.append(f"{file}: the file is empty; it needs at least one example per line")

    def read_line(self, where: str, lineno: int, line: bytes | int) -> int:
        """Validate one line; 1 if it was a record (valid or not), 0 if blank."""
        if isinstance(line, int):
            self.problems.append(self._too_long(where, line))
            return 1
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # a UTF-8 byte-order mark is harmless
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(
                f"{where}: not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1});"
                " re-save the file as UTF-8"
            )
            return 1
        if not text.strip():
            return 0
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            self.problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            return 1
        except ValueError:
            # An integer past sys.get_int_max_str_digits() (4300): json.loads raises a plain ValueError.
            self.problems.append(
                f"{where}: a number longer than {sys.get_int_max_str_digits()} digits, more than any field "
                "of an example takes; fix or remove it"
            )
            return 1
        except RecursionError:
            self.problems.append(f"{where}: JSON nested too deeply to be an example")
            return 1
        example, reason = _validate_record(record)
        if reason:
            self.problems.append(f"{where}: {reason}")
            return 1
        assert example is not None
        example["source"] = where
        self.examples.append(example)
        return 1

    def _too_long(self, where: str, size: int) -> str:
        if self.max_seq_length is None:
            why = f"longer than the {self.limit:,}-byte limit on one line"
        else:
            why = (
                f"longer than {self.limit:,} bytes, the most an example of max_seq_length={self.max_seq_length} "
                "tokens can take"
            )
        return (
            f"{where}: a line of {size:,} bytes, {why}; it was not read. Split or shorten it (a whole file on one "
            "line is often a JSON array: JSONL holds one object per line), or raise max_seq_length"
        )


def load_examples(
    path: Path,
    channel: str = "train",
    skip_invalid: bool = False,
    *,
    max_seq_length: int | None = None,
    chars_per_token: int = DEFAULT_CHARS_PER_TOKEN,
) -> LoadedData:
    """Read every line of every JSONL file under ``path``; raise once listing every bad line.

    Lines longer than ``max_line_bytes(max_seq_length, chars_per_token)`` are refused unread, like any
    other bad line. A file that cannot be read as JSONL at all is refused even with ``skip_invalid``:
    skipping covers lines, not whole files.
    """
    files = _channel_files(path, channel)
    reader = _Reader(limit=max_line_bytes(max_seq_length, chars_per_token), max_seq_length=max_seq_length)
    for file in files:
        reader.read_file(file)
    if reader.unreadable:
        raise UserError(
            format_problems(
                f"{channel} data has {len(reader.unreadable)} file(s) that cannot be read as JSONL:",
                reader.unreadable,
                MAX_REPORTED,
            )
        )
    problems = reader.problems
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
    log.info(
        "%s data: read %d file(s): %s",
        channel,
        len(files),
        _some([f"{_short(file, path)} ({reader.records.get(str(file), 0)} records)" for file in files]),
    )
    if not reader.examples:
        raise UserError(f"{channel} data at {path} holds no valid examples")
    return LoadedData(examples=reader.examples, files=files, skipped=problems, records=reader.records)


def _short(file: Path, root: Path) -> str:
    return file.name if file == root else str(file.relative_to(root))
