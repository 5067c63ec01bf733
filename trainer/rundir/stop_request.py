"""control/stop: a stop request addressed to one process, and consumed by the process that honours it.

    from trainer.rundir import stop_request
    stop_request.write(run_dir, status)        # for the process status.json names
    request = stop_request.read(run_dir)       # None when there is none
    request.is_for_status(status)              # is it for the process running the run now?
    watch = stop_request.Watch(run_dir, pid, create_time, started)   # the trainer's side
    watch.requested()                          # one stat per step
    watch.consume()                            # when it stops: the request is spent

A request outlives nothing: the trainer that honours it deletes it when it ends, and a resume
discards any left before it launches the next process. A request that names another process (one
that has exited) is never acted on, by the trainer or by whoever escalates to a signal; that is what
kept a stale request from killing a resumed trainer while the dashboard watched it.

The file holds JSON: {"pid", "pid_create_time", "requested", "by"}. An empty or non-JSON file
(`touch control/stop`) is an unaddressed request: it is for a process that began before it was
written.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from trainer.rundir import run_format as rf

# psutil's create_time on Linux is boot time (whole seconds) plus the start tick, so two reads of
# the same process agree closely, but against a wall-clock time it can be off by up to a second.
# An unaddressed request counts for a process only when written this long after its create time.
CREATE_TIME_SLACK_S = 1.0


def path(run_dir: str | Path) -> Path:
    return Path(run_dir) / rf.CONTROL_DIR / rf.STOP_FILE


@dataclass(frozen=True)
class StopRequest:
    requested: float  # wall-clock time it was made
    pid: int | None = None  # the process it is for; None when unaddressed
    pid_create_time: float | None = None
    by: int | None = None  # the process that asked

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.requested

    def is_for(self, pid: int, create_time: float, started: float) -> bool:
        """Is this request for the process (pid, create_time) that began at `started` (wall clock)?"""
        if self.pid is None:
            return self.requested >= started
        return (
            self.pid == pid
            and isinstance(self.pid_create_time, (int, float))
            and abs(self.pid_create_time - create_time) <= rf.CREATE_TIME_TOLERANCE_S
        )

    def is_for_status(self, status: dict | None) -> bool:
        """Is this request for the process status.json names now? False without one to compare."""
        pid, create_time = (status or {}).get("pid"), (status or {}).get("pid_create_time")
        if not isinstance(pid, int) or not isinstance(create_time, (int, float)):
            return False
        return self.is_for(pid, create_time, started=create_time + CREATE_TIME_SLACK_S)


def write(run_dir: str | Path, status: dict | None) -> StopRequest:
    """Write a request for the process status.json names (unaddressed when it names none yet)."""
    status = status or {}
    pid, create_time = status.get("pid"), status.get("pid_create_time")
    addressed = isinstance(pid, int) and isinstance(create_time, (int, float))
    request = StopRequest(
        requested=time.time(),
        pid=pid if addressed else None,
        pid_create_time=float(create_time) if addressed else None,
        by=os.getpid(),
    )
    target = path(run_dir)
    target.parent.mkdir(exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(request.__dict__) + "\n", encoding="utf-8")
    os.replace(tmp, target)  # a reader never sees half a request
    return request


def read(run_dir: str | Path) -> StopRequest | None:
    """The request in control/stop, or None if there is none."""
    target = path(run_dir)
    try:
        text = target.read_text(encoding="utf-8")
        mtime = target.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return StopRequest(requested=mtime)  # `touch control/stop`, or a format-1 text request
    pid, create_time, requested = data.get("pid"), data.get("pid_create_time"), data.get("requested")
    addressed = isinstance(pid, int) and not isinstance(pid, bool) and isinstance(create_time, (int, float))
    return StopRequest(
        requested=float(requested) if isinstance(requested, (int, float)) else mtime,
        pid=pid if addressed else None,
        pid_create_time=float(create_time) if addressed else None,
        by=data.get("by") if isinstance(data.get("by"), int) else None,
    )


def discard(run_dir: str | Path) -> None:
    """Remove any request: a resume does this before launching, as no live process can own it."""
    path(run_dir).unlink(missing_ok=True)


class Watch:
    """The trainer's side: is there a request for this process? One stat per call; the file is
    read only when it changes."""

    def __init__(self, run_dir: str | Path, pid: int, create_time: float, started: float):
        self.path = path(run_dir)
        self.run_dir = Path(run_dir)
        self.pid, self.create_time, self.started = pid, create_time, started
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._for_me = False

    def requested(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen, self._for_me = None, False
            return False
        key = (st.st_mtime_ns, st.st_size)
        if key != self._seen:
            request = read(self.run_dir)
            self._seen = key
            self._for_me = request is not None and request.is_for(self.pid, self.create_time, self.started)
        return self._for_me

    def discard_stale(self) -> None:
        """Remove a request that is for another process (one that has ended): nobody will honour it."""
        request = read(self.run_dir)
        if request is not None and not request.is_for(self.pid, self.create_time, self.started):
            self.path.unlink(missing_ok=True)

    def consume(self) -> None:
        """The run is ending: a request for this process is spent, so remove it."""
        request = read(self.run_dir)
        if request is not None and request.is_for(self.pid, self.create_time, self.started):
            self.path.unlink(missing_ok=True)
