"""Atomic checkpoints: a half-written checkpoint is never picked up on resume.

A checkpoint is written into a temporary sibling folder, ends with a ``COMPLETE`` manifest (every
file with its size and sha256), and is then renamed into place. On resume only folders whose manifest
matches their files count: SageMaker syncs ``/opt/ml/checkpoints`` to S3 file by file, so after a spot
interruption a restored folder could miss files even though it was complete locally, and a file changed
after it was sealed (corrupted, or replaced) no longer matches its hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "COMPLETE"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_matches(folder: Path) -> bool:
    manifest = folder / MANIFEST
    try:
        expected = json.loads(manifest.read_text())["files"]
        for rel, entry in expected.items():
            path = folder / rel
            if not path.is_file() or path.stat().st_size != entry["size"] or sha256(path) != entry["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no manifest, not JSON, or an older manifest without hashes
    return True


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            if _manifest_matches(child):
                found.append((int(match.group(1)), child))
            else:
                log.warning(
                    "ignoring incomplete checkpoint %s (missing files or manifest, or a file that no longer "
                    "matches its sha256)",
                    child,
                )
    return sorted(found)


def latest_checkpoint(root: Path) -> tuple[int, Path] | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: Path, step: int, write: Callable[[Path], None], keep: int) -> Path:
    """Call ``write(tmp_folder)``, seal it with a manifest, move it into place, prune old ones."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    files = {
        str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(tmp.rglob("*"))
        if p.is_file()
    }
    (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))
    for p in tmp.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    for _, folder in complete_checkpoints(root)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
    # Leftovers of a process killed mid-write.
    for child in root.glob(".tmp-step-*"):
        if not child.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(child, ignore_errors=True)
