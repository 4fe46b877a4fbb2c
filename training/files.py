"""Small files that must never be seen half-written: state, cache entries, manifests, reports.

A reader sees the old file or the new one, never a mix: the text goes to a temporary file in the same
folder (so the rename stays on one file system), is flushed to disk, and is renamed over the target
(``os.replace`` is atomic on POSIX). A crash or a full disk leaves the old file and, at worst, a
``.tmp-*`` beside it. Files are created 0600 (``mkstemp``): they are the user's own state.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

# What "the disk is full" looks like in an OSError: no space left, or the user's quota spent (errno(3)).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    # allow_nan=False: NaN and Infinity are not JSON, and another reader would refuse the file.
    write_text_atomic(path, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


class UnreadableFile(Exception):
    """A state or cache file exists but is not what we wrote: says which file and why."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``UnreadableFile`` when it cannot be read or is not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UnreadableFile(path, f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnreadableFile(path, f"holds a JSON {type(data).__name__}, not an object")
    return data
