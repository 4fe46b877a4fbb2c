"""One writer at a time on a local store.

``mlops run --local``, ``mlops train --local`` and ``mlops endpoint stop --local`` change what is in
``.mlops/``: the run folders, the step cache, the checkpoint prefixes (which executions with the same
inputs share, by design) and the one local endpoint. Two of them at once raced: one crashed in the
endpoint's stop and killed the other's endpoint. So each takes this lock for as long as it runs, and a
second one is refused at once with the holder's pid, command, execution id and start time.

The lock is ``flock`` on ``<store>/lock``: the kernel drops it when its holder dies, even by
``kill -9``, so a crashed run never leaves the store locked. The holder is described in
``<store>/lock.json`` (written after the lock is taken; only for the message). Reading commands
(``status``, ``models list``) do not take it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.errors import UserError
from training.files import UnreadableFile, read_json_object, write_json_atomic

LOCK_FILE = "lock"
HOLDER_FILE = "lock.json"


class StoreBusy(UserError):
    """Another command holds the store."""


@contextmanager
def store_lock(store_root: Path, command: str, execution_id: str | None = None) -> Iterator[None]:
    store_root.mkdir(parents=True, exist_ok=True)
    # Python opens files non-inheritable (PEP 446: O_CLOEXEC), so jobs and the endpoint started under the
    # lock do not inherit it, and a long-lived endpoint never keeps the store locked.
    handle = open(store_root / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(_busy_message(store_root)) from None
        write_json_atomic(
            store_root / HOLDER_FILE,
            {
                "pid": os.getpid(),
                "command": command,
                "execution_id": execution_id,
                "since": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            },
        )
        yield
    finally:
        handle.close()  # releases the lock


def _busy_message(store_root: Path) -> str:
    try:
        holder = read_json_object(store_root / HOLDER_FILE)
        who = f"pid {holder.get('pid')} (`{holder.get('command')}`"
        if holder.get("execution_id"):
            who += f", execution {holder['execution_id']}"
        who += f", since {holder.get('since')})"
    except UnreadableFile:
        who = "another process (its description in lock.json is unreadable)"
    return (
        f"the local store {store_root} is in use by {who}. Local runs share the step cache, the "
        "checkpoints and the endpoint, so they take turns: wait for it to finish, stop it (Ctrl-C in "
        "its terminal, or kill its pid), or give this run its own store with --set local.store_dir=PATH"
    )
