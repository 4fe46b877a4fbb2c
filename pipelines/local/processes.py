"""Which local process is which: pids outlive nothing, so a pid alone never identifies a job.

A saved pid can be reused by an unrelated process once ours is gone. So with each pid we keep the
process's start time (``training/process_start.start_ticks``) and a marker its command line must
hold. Where there is no ``/proc`` (macOS), only existence is checked.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path
from typing import Any

from training.process_start import start_ticks


def is_running(pid: int, marker: bytes, started: int | None = None) -> bool:
    """True while ``pid`` is still the process we started: alive, its command line holds ``marker``,
    and (when we recorded it) it started when ours did."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or another user's process (so not ours)
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc: existence is all we can tell
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    if not any(marker in arg for arg in args):
        return False
    return started is None or start_ticks(pid) == started


# linux/prctl.h; prctl(2): "the signal that the calling process will get when its parent dies".
PR_SET_PDEATHSIG = 1


def prctl() -> Any:
    """libc's prctl, looked up in the parent: between fork and exec, with other threads running (rich's
    refresh thread), the child must not dlopen (subprocess docs on preexec_fn). None where there is none."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(parent: int, prctl: Any) -> None:
    """``preexec_fn`` for a job: SIGTERM it when the process that started it dies, even by ``kill -9``.

    Linux only (prctl(2), PR_SET_PDEATHSIG); elsewhere a job notices on its next write to the closed
    pipe (the entrypoint exits on SIGPIPE). prctl's "parent" is the thread that forked, so jobs are
    started from the executor's (main) thread. ``parent`` is our pid, taken before the fork: if the
    parent is already gone when this runs, the job exits.
    """
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
