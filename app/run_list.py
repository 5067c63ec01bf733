"""Every run's facts for the runs table, re-read only for runs whose files changed.

trainer.runs.list_runs reads every status.json (and stats every events.jsonl) on each call; the
runs table and the run pickers call it every second in every tab. RunList keeps each run's
RunInfo and rebuilds it only when the watcher says one of the files it comes from changed, or when
something outside the files changes it: a live run's state turns "crashed" when its process dies
(checked on every call: one process-table look-up), or, for a run written on another host, once its
heartbeat is older than STALE_AFTER_SECONDS.

    run_list = RunList(runs_dir)
    infos = run_list.infos(watcher_for(runs_dir))
"""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.run_watch import TABLE_FILES, RunsWatcher
from trainer import runs
from trainer.rundir import owner
from trainer.rundir import run_format as rf
from trainer.runs import process


@dataclass
class _Entry:
    token: tuple
    info: runs.RunInfo | None  # None: a folder that is not a run (yet)
    valid_until: float  # wall time after which the state must be derived again
    process: dict | None = None  # a live run's pid and create time on this host: gone means crashed

    def current(self, token: tuple, now: float) -> bool:
        if self.token != token or now >= self.valid_until:
            return False
        return self.process is None or owner.same_process(self.process) is not None


def _valid_until(info: runs.RunInfo | None) -> float:
    if info is None or info.state not in rf.LIVE_STATES:
        return math.inf  # finished, stopped, failed, crashed: only a file change alters them
    if isinstance(info.updated, (int, float)):
        return info.updated + rf.STALE_AFTER_SECONDS
    return 0.0  # starting, judged by train.log's age: derive it every time


def _local_process(run_dir: Path, info: runs.RunInfo | None) -> dict | None:
    """The process to watch for a live run written on this host (see trainer.rundir.status)."""
    if info is None or info.state not in rf.LIVE_STATES:
        return None
    status = runs.read_status(run_dir) or {}
    if status.get("host") not in (None, socket.gethostname()) or not isinstance(status.get("pid"), int):
        return None
    return {"pid": status["pid"], "pid_create_time": status.get("pid_create_time")}


class RunList:
    """The runs under runs_dir, newest first, kept current from change tokens."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self._lock = threading.Lock()
        self._listing_token: tuple | None = None
        self._names: list[str] = []
        self._entries: dict[str, _Entry] = {}
        self.rebuilt = 0  # RunInfos rebuilt from disk so far (tests and benchmarks read it)

    def infos(self, watcher: RunsWatcher, now: float | None = None) -> list[runs.RunInfo]:
        process.reap()  # a dashboard lists every second: collect its finished trainers here
        now = time.time() if now is None else now
        with self._lock:
            listing = watcher.listing_token()
            if listing != self._listing_token:
                self._listing_token = listing  # taken before scanning: a change during it shows next time
                self._names = self._scan()
                self._entries = {n: e for n, e in self._entries.items() if n in self._names}
            infos = [info for name in self._names if (info := self._info(watcher, name, now)) is not None]
        return runs.newest_first(infos)

    def _scan(self) -> list[str]:
        try:
            return [p.name for p in self.runs_dir.iterdir() if rf.RUN_ID_RE.match(p.name) and p.is_dir()]
        except OSError:  # the runs directory vanished or was never made: no runs
            return []

    def _info(self, watcher: RunsWatcher, name: str, now: float) -> runs.RunInfo | None:
        token = watcher.token(name, TABLE_FILES)
        entry = self._entries.get(name)
        if entry is not None and entry.current(token, now):
            return entry.info
        path = self.runs_dir / name
        # trainer.runs decides what counts as a run (status, config or log present).
        info = runs.run_info(path, now) if runs.is_run_dir(path) else None
        self.rebuilt += 1
        self._entries[name] = _Entry(token, info, _valid_until(info), _local_process(path, info))
        return info
