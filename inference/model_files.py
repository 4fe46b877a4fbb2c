"""Find the Hugging Face model folder behind a path SageMaker hands us.

A training job's output reaches later steps as ``model.tar.gz``; a processing input or an endpoint's
``/opt/ml/model`` may hold that archive or its extracted contents. Either way, callers get a folder
with ``config.json``.

An archive is extracted into a temporary folder beside the target and renamed into place only once
every member is out and the gzip stream has passed its checksum, with a marker naming the archive's
sha256. So a later run reuses an extracted folder only if it came, whole, from the very same archive:
a new archive at the same path, a refused archive, or a truncated one is never taken for a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from training.errors import UserError

log = logging.getLogger(__name__)

ARCHIVE = "model.tar.gz"
# Inside an extracted folder: which archive it came from. Its content depends only on the archive, so a
# folder hash over the extracted model (training.fingerprints) stays the same from run to run.
MARKER = ".model-archive.json"
_TMP_INFIX = ".tmp-"
# A temporary folder this old is a leftover of a process killed mid-extraction: no extraction takes a day.
_LEFTOVER_AGE_SECONDS = 24 * 3600
_REBUILD = (
    "a model archive holds only regular files and folders, named relative to the model folder (as "
    "`tar -czf model.tar.gz -C <model folder> .` writes them): rebuild it from the model folder"
)


def model_folder(path: Path, what: str, extract_to: Path | None = None) -> Path:
    """``path`` itself if it holds config.json, else the extracted ``model.tar.gz`` inside it."""
    if (path / "config.json").is_file():
        return path
    archive = path / ARCHIVE if path.is_dir() else path
    if archive.is_file() and archive.name.endswith(".tar.gz"):
        return extracted_model(archive, extract_to or archive.parent / "extracted", what)
    if not path.exists():
        raise UserError(f"{what}: {path} does not exist; give the model folder (or its {ARCHIVE}) there")
    listing = ", ".join(sorted(p.name for p in path.iterdir())[:10]) if path.is_dir() else path.name
    raise UserError(
        f"{what}: {path} holds neither a Hugging Face model (config.json) nor {ARCHIVE} (found: {listing or 'nothing'})"
    )


def extracted_model(archive: Path, target: Path, what: str) -> Path:
    """``target`` holding ``archive``'s contents: reused when its marker names this archive's sha256,
    else extracted afresh beside it and swapped in."""
    key = _archive_key(archive)
    if _marker_matches(target, key):
        log.info("reusing %s, extracted from this very %s (sha256 %s)", target, archive, key["sha256"])
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_INFIX}", dir=target.parent))
    try:
        log.info("extracting %s to %s", archive, target)
        _extract(archive, tmp, what)
        if not (tmp / "config.json").is_file():
            raise UserError(
                f"{what}: {archive} holds no config.json at its top level; it is not a model archive"
            )
        _write_marker(tmp, key)
        if _marker_matches(target, key):  # another process extracted the same archive meanwhile
            return target
        _swap_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful swap
    return target


def _archive_key(archive: Path) -> dict[str, object]:
    """The archive's identity: its content, not its path or mtime (a copy may keep an old mtime)."""
    digest = hashlib.sha256()
    with open(archive, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size": archive.stat().st_size}


def _marker_matches(folder: Path, key: dict[str, object]) -> bool:
    try:
        return bool(json.loads((folder / MARKER).read_text(encoding="utf-8")) == key)
    except (OSError, ValueError):
        return False  # no marker (an older layout, or never finished): extract again


def _write_marker(folder: Path, key: dict[str, object]) -> None:
    # Written into the temporary folder before it is renamed into place; fsynced so the rename never
    # publishes a folder whose marker is still in the page cache only.
    with open(folder / MARKER, "w", encoding="utf-8") as fh:
        json.dump(key, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``. A folder cannot replace a non-empty folder in one rename, so an old
    ``target`` is first moved aside (a reader in between finds no folder and extracts for itself)."""
    aside = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_INFIX}old-", dir=target.parent))
        os.replace(target, aside / "previous")
    os.replace(tmp, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _remove_leftovers(target: Path) -> None:
    cutoff = time.time() - _LEFTOVER_AGE_SECONDS
    for leftover in target.parent.glob(f".{target.name}{_TMP_INFIX}*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                log.info("removing %s, left by an extraction that was killed", leftover)
                shutil.rmtree(leftover, ignore_errors=True)


class _LinkInside(tarfile.FilterError):
    """A symbolic or hard link, even one that stays inside the folder."""

    def __init__(self, tarinfo: tarfile.TarInfo) -> None:
        self.tarinfo = tarinfo
        super().__init__(f"{tarinfo.name!r} is a link")


def _refuse_absolute(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """Python's "data" filter refuses traversal, links out of the folder and device files, but strips a
    leading "/" and extracts the member (as GNU tar does). Our archives name members relative to the
    model folder, so an absolute name means the archive was not made for this: refuse it too.

    Links are refused even when they stay inside: chains of links defeat the "data" filter on
    interpreters before 3.10.18 / 3.11.13 / 3.12.11 / 3.13.4 (CVE-2025-4517, CVE-2025-4330,
    CVE-2025-4138; python/cpython gh-135034), and a model archive needs none (our packers,
    ``pipelines/local/jobs.pack_model`` and ``inference/compile.py``, write regular files only)."""
    if member.name.startswith("/"):
        raise tarfile.AbsolutePathError(member)
    checked = tarfile.data_filter(member, dest)
    if checked is not None and (checked.issym() or checked.islnk()):
        raise _LinkInside(checked)
    return checked


class _Position:
    """The member being read, for a message that says where an archive breaks off."""

    member: str | None = None


def _members(tar: tarfile.TarFile, position: _Position) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        position.member = member.name
        yield member


def _extract(archive: Path, dest: Path, what: str) -> None:
    """Every member into ``dest``, or a UserError naming the archive, the member and what to do."""
    _check_gzip(archive, what)
    position = _Position()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, members=_members(tar, position), filter=_refuse_absolute)
            # tarfile stops at the end-of-archive blocks and never reads the gzip trailer: read the
            # stream to its end so a cut-off or corrupt archive fails its length and CRC check here.
            fileobj = tar.fileobj
            while fileobj is not None and fileobj.read(1 << 20):
                pass
    except tarfile.FilterError as exc:
        raise UserError(
            f"{what}: {archive}: refused member {exc.tarinfo.name!r}: {_refusal(exc)}; nothing was "
            f"extracted. {_REBUILD}"
        ) from None
    except (EOFError, zlib.error, tarfile.ReadError, OSError) as exc:
        if isinstance(exc, OSError) and not _is_corruption(exc):
            raise  # a real I/O problem (disk full, permissions): not the archive's fault
        if isinstance(exc, tarfile.ReadError) and position.member is None:
            raise UserError(
                f"{what}: {archive} is gzip-compressed but holds no tar archive ({exc}). Pack the model "
                "folder with `tar -czf model.tar.gz -C <model folder> .`"
            ) from None
        where = (
            f"in or right after member {position.member!r}" if position.member else "before its first member"
        )
        raise UserError(
            f"{what}: {archive} is truncated or corrupt: it breaks off {where} ({exc}); nothing was "
            f"extracted. Copy or download the archive again (it is {archive.stat().st_size} bytes here)"
        ) from None


def _is_corruption(exc: OSError) -> bool:
    import gzip

    return isinstance(exc, gzip.BadGzipFile)  # a bad CRC or length in the gzip trailer


def _refusal(exc: tarfile.FilterError) -> str:
    member = exc.tarinfo
    if isinstance(exc, tarfile.AbsolutePathError):
        return "its path is absolute"
    if isinstance(exc, tarfile.OutsideDestinationError):
        return "its path leads outside the extraction folder (path traversal)"
    if isinstance(exc, tarfile.AbsoluteLinkError | tarfile.LinkOutsideDestinationError):
        return f"it is a link to {member.linkname!r}, outside the extraction folder"
    if isinstance(exc, _LinkInside):
        return f"it is a link (to {member.linkname!r}), and a model archive holds no links"
    if isinstance(exc, tarfile.SpecialFileError):
        kind = "device file" if member.ischr() or member.isblk() else "special file (FIFO)"
        return f"it is a {kind}"
    return str(exc)


def _check_gzip(archive: Path, what: str) -> None:
    with open(archive, "rb") as fh:
        head = fh.read(512)
    if head[:2] == b"\x1f\x8b":
        return
    if not head:
        found = "it is empty (0 bytes)"
    elif len(head) >= 262 and head[257:262] == b"ustar":
        found = "it is an uncompressed tar archive"
    elif head[:4] == b"PK\x03\x04":
        found = "it is a zip archive"
    else:
        found = f"it starts with {head[:8]!r}, not the gzip signature"
    raise UserError(
        f"{what}: {archive} is not a gzip-compressed tar archive: {found}. Give the {ARCHIVE} the "
        "training or compile step wrote, or pack the model folder with `tar -czf model.tar.gz -C <model folder> .`"
    )
