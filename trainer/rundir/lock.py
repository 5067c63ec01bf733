"""One writer per run directory: an advisory lock (flock) on <run>/.writer.lock, held by the process
writing the run for as long as it writes.

    lock = hold(run_dir, "pick another --run-id")   # RunBusy naming the holder's pid if taken
    ...
    lock.release()

The kernel drops the lock when its holder ends, however it ends (kill -9 and the OOM killer
included), so a lock is never stale: a process that died, or whose pid was reused, holds nothing.
The lock file stays behind on purpose (deleting it would race with a process about to lock it).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trainer.errors import RunBusy
from trainer.rundir import run_format as rf


class WriterLock:
    """A held lock; release() (or the end of the process) lets the next writer in."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def hold(run_dir: str | Path, what_to_do: str) -> WriterLock:
    """Take run_dir's writer lock, or raise RunBusy naming the process that holds it and what_to_do."""
    run_dir = Path(run_dir)
    fd = os.open(run_dir / rf.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunBusy(
            f"run {run_dir.name!r} is being written by another process (pid {holder}); {what_to_do}"
        ) from None
    try:  # the holder's pid, for the message above; only a message, so a full disk may skip it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return WriterLock(fd)
