"""Atomic checkpoints, a fallback past a bad one, and one writer per checkpoint folder.

A checkpoint is written into a temporary sibling folder, ends with a ``COMPLETE`` manifest (every
file with its size and sha256), and is then renamed into place. On resume only folders whose manifest
matches their files count: SageMaker syncs ``/opt/ml/checkpoints`` to S3 file by file, so after a spot
interruption a restored folder could miss files even though it was complete locally, and a file changed
after it was sealed (corrupted, or replaced) no longer matches its hash.

A checkpoint that fails its manifest, or matches it but cannot be loaded (written corrupt), is named in
the log with the reason, moved aside as ``.bad-step-N-<reason>-<time>`` (kept for inspection, never
listed, never pruned) and the next older one is tried: a bad newest checkpoint must not block every
spot restart for good.

Two executions with the same inputs share a checkpoint prefix by design (the pipeline keys it on the
inputs, so SageMaker's step cache works), so two trainers can meet in one folder. A writer lease
(``writer-lease.json``) names the trainer that writes there; a second job refuses to start while the
lease is fresh, and temporary folders are only ever removed by their owner or once their owner is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from training.errors import UserError
from training.process_start import started_at

log = logging.getLogger(__name__)

MANIFEST = "COMPLETE"
LEASE = "writer-lease.json"
BAD_PREFIX = ".bad-"
_NAME = re.compile(r"^step-(\d+)$")
# .tmp-step-0000010-<host>-<pid>-<machine>: the owner is in the name, so no one else deletes it while
# it is being written. (Older writers used .tmp-step-0000010-<pid>.)
_TMP = re.compile(r"^\.tmp-step-\d+-(?:(?P<host>.+)-(?P<pid>\d+)-(?P<machine>[0-9a-f]{8})|\d+)$")
# A temporary folder this old belongs to no live writer wherever it came from: a checkpoint is written
# in seconds to minutes, never in a day.
_ABANDONED_AFTER_SECONDS = 24 * 3600

# The lease. A live trainer rewrites its heartbeat every HEARTBEAT_SECONDS from a background thread (and
# at every checkpoint save), so its age does not depend on the checkpoint interval, which may be hours.
# It counts as stale after LEASE_STALE_SECONDS: ten missed heartbeats, room for a slow disk or a slow
# upload of the file to S3, and short enough that a pipeline retry after a crashed instance (the
# training step's SageMakerJobStepRetryPolicy waits 600 s, then the instance starts) finds the dead
# job's lease stale and takes over instead of failing.
HEARTBEAT_SECONDS = 60.0
LEASE_STALE_SECONDS = 600.0

T = TypeVar("T")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- finding and checking checkpoints -------------------------------------------------------------------


def manifest_problem(folder: Path) -> str | None:
    """Why ``folder``'s manifest does not vouch for its files; None when it does."""
    try:
        expected = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} manifest (written or restored only in part)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable {MANIFEST} manifest ({type(exc).__name__}: {exc})"
    try:
        for rel, entry in expected.items():
            path = folder / rel
            if not path.is_file():
                return f"{rel} is missing"
            if path.stat().st_size != entry["size"]:
                return f"{rel} is {path.stat().st_size} bytes, the manifest says {entry['size']}"
            if sha256(path) != entry["sha256"]:
                return f"{rel} no longer matches its sha256 in the manifest"
    except (KeyError, TypeError, AttributeError):
        return f"{MANIFEST} manifest has no size and sha256 per file (written by an older version)"
    return None


def checkpoint_folders(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every ``step-N`` folder, checked or not, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint whose manifest matches its files, oldest first."""
    found = []
    for step, folder in checkpoint_folders(root):
        problem = manifest_problem(folder)
        if problem is None:
            found.append((step, folder))
        else:
            log.warning("ignoring checkpoint %s: %s", folder, problem)
    return sorted(found)


def latest_checkpoint(root: Path) -> tuple[int, Path] | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def load_newest(
    root: Path, load: Callable[[Path], T], unreadable: Callable[[Exception], bool]
) -> tuple[tuple[int, Path, T] | None, list[Path]]:
    """The newest checkpoint that passes its manifest and loads: ``((step, folder, load(folder)) or None,
    the folders set aside)``. An error of ``load`` for which ``unreadable(error)`` holds marks the
    checkpoint bad; any other (a disk that fails to read, out of memory) propagates and moves nothing."""
    set_aside: list[Path] = []
    for step, folder in reversed(checkpoint_folders(root)):
        problem = manifest_problem(folder)
        if problem is None:
            try:
                return (step, folder, load(folder)), set_aside
            except Exception as exc:
                if not unreadable(exc):
                    raise
                problem = f"it does not load: {type(exc).__name__}: {exc}"
        log.error("checkpoint %s is bad: %s; falling back to the next older one", folder, problem)
        moved = set_bad_checkpoint_aside(folder, problem)
        if moved:
            set_aside.append(moved)
    return None, set_aside


def set_bad_checkpoint_aside(folder: Path, reason: str) -> Path | None:
    """Rename ``folder`` to ``.bad-<name>-<time>`` beside it, with the reason in ``WHY.txt`` inside.

    Renamed, not deleted: someone will want to know what went wrong. In the cloud the rename reaches the
    checkpoint prefix too, because SageMaker mirrors deletions in the local folder to S3 ("If a checkpoint
    is deleted in the SageMaker AI container, it will also be deleted in the S3 folder",
    https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html), so the next restart is not
    handed the bad checkpoint again."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    bad = folder.parent / f"{BAD_PREFIX}{folder.name}-{stamp}-{os.getpid()}"
    try:
        os.replace(folder, bad)
    except OSError as exc:
        log.error("could not move the bad checkpoint %s aside (%s); it stays and is skipped", folder, exc)
        return None
    with contextlib.suppress(OSError):  # the rename is what matters; the note only helps a reader
        (bad / "WHY.txt").write_text(f"{folder.name} was set aside at {stamp}: {reason}\n", encoding="utf-8")
    log.warning("moved the bad checkpoint %s aside to %s, kept for inspection", folder, bad)
    return bad


# ---- writing ----------------------------------------------------------------------------------------------


def save_checkpoint(
    root: Path,
    step: int,
    write: Callable[[Path], None],
    keep: int,
    lease: WriterLease | None = None,
) -> Path:
    """Call ``write(tmp_folder)``, seal it with a manifest, move it into place, prune old ones. With a
    ``lease``, first check that this process still holds it (and refresh its heartbeat)."""
    if lease is not None:
        lease.refresh()
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{_owner_tag()}"
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
    for child in root.glob(".tmp-step-*"):
        if _abandoned(child):
            log.info("removing %s, left by a writer that is gone", child)
            shutil.rmtree(child, ignore_errors=True)


def _abandoned(tmp: Path) -> bool:
    """Whether no live writer owns this temporary folder: its owner was a process on this machine that
    no longer exists, or it is older than a day. Another live writer's folder is never touched."""
    match = _TMP.match(tmp.name)
    if match and match.group("machine") == _machine_tag():
        pid = int(match.group("pid"))
        try:
            written = tmp.stat().st_mtime
        except OSError:
            return False  # gone already
        return pid != os.getpid() and not _alive(pid, since=written)
    try:
        return time.time() - tmp.stat().st_mtime > _ABANDONED_AFTER_SECONDS
    except OSError:
        return False  # gone already


# ---- who is writing: process identity --------------------------------------------------------------------


def _machine() -> str:
    """Where a pid names one process: the kernel's boot id and this process's pid namespace (containers on
    one host share the boot id but not the namespace; SageMaker calls every job's first host ``algo-1``, so
    the host name alone cannot tell two instances apart). Without /proc (macOS), the host name."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


def _machine_tag() -> str:
    return hashlib.sha256(_machine().encode()).hexdigest()[:8]


def _owner_tag() -> str:
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())
    return f"{host}-{os.getpid()}-{_machine_tag()}"


def _alive(pid: int, since: float) -> bool:
    """Whether ``pid`` is alive and could be the process that was writing at time ``since`` (epoch
    seconds): a pid reused by a process that started later is not it."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = started_at(pid)
    return started is None or started <= since + 1.0  # 1 s: clock-tick rounding of the start time


# ---- the writer lease ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds the writer lease of a checkpoint folder, as ``writer-lease.json`` records it."""

    job: str | None  # TRAINING_JOB_NAME; None when the trainer was started by hand
    host: str
    pid: int
    machine: str  # _machine_tag(): where ``pid`` means something
    started_at: str  # ISO 8601, UTC
    heartbeat_at: str

    @classmethod
    def this_process(cls, job: str | None, now: datetime) -> LeaseHolder:
        stamp = now.isoformat(timespec="seconds")
        return cls(job, socket.gethostname(), os.getpid(), _machine_tag(), stamp, stamp)

    def same_process(self, other: LeaseHolder) -> bool:
        return (self.machine, self.pid, self.started_at) == (other.machine, other.pid, other.started_at)

    def describe(self) -> str:
        job = f"training job {self.job!r}" if self.job else "a trainer started without TRAINING_JOB_NAME"
        return f"{job} on host {self.host!r} (pid {self.pid}), writing since {self.started_at}"

    def heartbeat_age(self, now: datetime) -> float:
        return (now - datetime.fromisoformat(self.heartbeat_at)).total_seconds()


class WriterLease:
    """One writer per checkpoint folder, named in ``<root>/writer-lease.json``.

    Exact on one machine: taking the lease happens under an flock of the folder, a holder whose process
    is gone is seen at once, and each save checks the lease is still ours. In the cloud it is a
    best-effort guard: SageMaker copies the checkpoint prefix into a job's folder when the job starts and
    uploads the folder's changes while it runs, and "checkpoints added to the S3 folder after the job has
    started are not copied to the training container"
    (https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html). So a job sees the lease of a
    job that started before it (as of that job's last upload, which is eventually consistent), and the
    earlier job never sees the later one's.

    A spot restart is the same training job started again under the same name: the job's status goes
    Training -> Interrupted -> Starting -> Downloading -> Training
    (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training-status.html), and
    "when the job is restarted, SageMaker AI copies the data from Amazon S3 back into the local path"
    (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html). So a lease held
    under this job's own name is taken over: it is our own earlier run, dead.
    """

    def __init__(self, root: Path, job: str | None, clock: Callable[[], datetime] | None = None) -> None:
        self.root = root
        self.path = root / LEASE
        self.job = job or None
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.holder: LeaseHolder | None = None  # ours, once acquired
        self.lost_to: LeaseHolder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_this_job(cls, root: Path, job_name: str | None) -> WriterLease:
        """``job_name``: TRAINING_JOB_NAME, which SageMaker sets in every training container and the
        local twin sets too (containers/contract.py, TRAINING); None for a trainer started by hand."""
        return cls(root, job_name)

    # -- taking, keeping, giving back

    def acquire(self) -> None:
        """Take the lease, or raise a UserError naming the live holder and what to do."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            current, unreadable = self._read()
            now = self._clock()
            if current is not None:
                self._check_can_take(current, now)
            elif unreadable:
                log.warning("%s is unreadable (%s); taking the lease over", self.path, unreadable)
            self.holder = LeaseHolder.this_process(self.job, now)
            self._write(self.holder)
        log.info("writer lease of %s taken: %s", self.root, self.holder.describe())

    def _check_can_take(self, current: LeaseHolder, now: datetime) -> None:
        age = current.heartbeat_age(now)
        if self.job is not None and current.job == self.job:
            why = "it is this same job's earlier run (a spot restart or retry keeps the job's name)"
        elif current.machine == _machine_tag() and not _alive(
            current.pid, since=datetime.fromisoformat(current.heartbeat_at).timestamp()
        ):
            why = f"its process {current.pid} on this machine is gone"
        elif age > LEASE_STALE_SECONDS:
            why = f"its last heartbeat is {age:.0f} s old (stale after {LEASE_STALE_SECONDS:.0f} s)"
        else:
            raise UserError(self._refusal(current, now, age))
        log.warning("taking over the writer lease of %s from %s: %s", self.root, current.describe(), why)

    def _refusal(self, current: LeaseHolder, now: datetime, age: float) -> str:
        expires = datetime.fromisoformat(current.heartbeat_at).timestamp() + LEASE_STALE_SECONDS
        return (
            f"checkpoint folder {self.root} is in use by {current.describe()}; its last heartbeat was "
            f"{max(age, 0):.0f} s ago. Two executions with the same inputs share one checkpoint prefix and "
            "would overwrite each other's checkpoints, so this one stops. Wait for that job to finish (or "
            f"stop it). If it is no longer running, delete {self.path} (in the cloud: the object {LEASE} "
            f"under the training step's checkpoint S3 prefix), or start again after "
            f"{datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec='seconds')}, when the lease goes stale"
        )

    def refresh(self) -> None:
        """Rewrite the heartbeat; raise a UserError if another writer has taken the lease meanwhile."""
        if self.holder is None:
            raise RuntimeError("refresh() before acquire()")
        if self.lost_to is None:
            self._heartbeat()
        if self.lost_to is not None:
            raise UserError(
                f"this trainer lost the writer lease of checkpoint folder {self.root} to "
                f"{self.lost_to.describe()}; it stops without writing, so two trainers never write one "
                "folder. Run one training job per checkpoint prefix at a time"
            )

    def _heartbeat(self) -> None:
        assert self.holder is not None
        with self._locked():
            current, _ = self._read()
            if current is not None and not current.same_process(self.holder):
                self.lost_to = current
                log.error("lost the writer lease of %s to %s", self.root, current.describe())
                return
            # Missing (deleted by hand) or ours: we are still the writer.
            self.holder = LeaseHolder(**{**asdict(self.holder), "heartbeat_at": self._now_iso()})
            self._write(self.holder)

    def release(self) -> None:
        """Remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.holder is None:
            return
        with self._locked():
            current, _ = self._read()
            if current is not None and current.same_process(self.holder):
                self.path.unlink(missing_ok=True)
        self.holder = None

    @contextlib.contextmanager
    def held(self) -> Iterator[WriterLease]:
        """Acquire, heartbeat from a background thread while the body runs, release on the way out."""
        self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="checkpoint-lease", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self.release()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS) and self.lost_to is None:
            try:
                self._heartbeat()
            except OSError as exc:  # a full disk must not kill the thread silently; the save will fail loudly
                log.warning("could not refresh the writer lease %s: %s", self.path, exc)

    # -- the file

    def _now_iso(self) -> str:
        return self._clock().isoformat(timespec="seconds")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive flock of the checkpoint folder itself: serializes lease changes between processes
        (and threads) on one machine, with no lock file to leave behind."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> tuple[LeaseHolder | None, str | None]:
        """(holder, None), (None, None) when there is no lease, or (None, why) when it is unreadable."""
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
            holder = LeaseHolder(**data)
            holder.heartbeat_age(self._clock())  # the timestamps parse
            return holder, None
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, TypeError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _write(self, holder: LeaseHolder) -> None:
        """Atomically: a temporary file beside it, fsync, rename."""
        tmp = self.path.with_name(f".{LEASE}.tmp-{_owner_tag()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(holder), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
