"""When a process started, from /proc: what tells a pid's owner from a later process given the same pid.

proc(5): field 22 of ``/proc/<pid>/stat`` is the start time in clock ticks since boot (fields counted
after the command name, which sits in parentheses and may hold spaces); ``btime`` in ``/proc/stat`` is
the boot time in epoch seconds. Without /proc (macOS) both answer None.
"""

from __future__ import annotations

import os
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None without /proc or when the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def started_at(pid: int) -> float | None:
    """When the process started, in epoch seconds; None without /proc or when the pid is gone."""
    ticks = start_ticks(pid)
    try:
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration, ValueError):
        return None
    return None if ticks is None else boot + ticks / os.sysconf("SC_CLK_TCK")
