"""Listing runs: one RunInfo row per run directory, newest first, with alert counts.

`python -m trainer list` and the dashboard's run table both show these rows.

    from trainer.rundir.listing import list_runs
    for info in list_runs("runs"):
        print(info.run_id, info.state, info.step)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records
from trainer.rundir.skipped import notes as skipped_notes
from trainer.rundir.skipped import status_unreadable
from trainer.rundir.status import read_config, read_status, state_from_status

# events.jsonl path -> (size, mtime_ns, counts): list_runs runs every refresh, events rarely change.
_alert_cache: dict[Path, tuple[int, int, dict[str, int]]] = {}


def alert_counts(run_dir: str | Path) -> dict[str, int]:
    """Alerts in events.jsonl by severity: {"info": n, "warning": n, "critical": n}."""
    path = Path(run_dir) / rf.EVENTS_FILE
    counts = dict.fromkeys(rf.SEVERITIES, 0)
    try:
        st = path.stat()
    except OSError:
        return counts
    cached = _alert_cache.get(path)
    if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
        return dict(cached[2])
    for record in read_records(path, contains=b'"alert"'):
        if record.get("kind") == "alert" and record.get("severity") in counts:
            counts[record["severity"]] += 1
    _alert_cache[path] = (st.st_size, st.st_mtime_ns, dict(counts))
    return counts


@dataclass
class RunInfo:
    """One row of `python -m trainer list` and of the dashboard's run table."""

    run_id: str
    task: str | None
    state: str
    step: int
    max_steps: int | None
    best_val_loss: float | None
    started: float | None
    updated: float | None
    parent: str | None
    pid: int | None
    alert_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(rf.SEVERITIES, 0))
    message: str = ""
    writer: str | None = None  # status.json "writer": "api" for a script's own loop (not resumable here)
    imported_from: str | None = None  # status.json "imported_from": a log another tool wrote (not resumable)
    skipped: tuple[str, ...] = ()  # an unreadable status.json, in the reader's words (trainer.rundir.skipped)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_info(run_dir: str | Path, now: float | None = None) -> RunInfo:
    """What list_runs shows for one run directory."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = read_status(run_dir) or {}
    task, max_steps = status.get("task"), status.get("max_steps")
    if task is None or max_steps is None:
        cfg = read_config(run_dir) or {}
        task = task if task is not None else cfg.get("task")
        max_steps = max_steps if max_steps is not None else cfg.get("max_steps")
    best = status.get(rf.STATUS_BEST_VAL_LOSS)
    return RunInfo(
        run_id=run_dir.name,
        task=task,
        state=state_from_status(run_dir, status or None, now),
        step=_int_or(status.get("step"), 0),
        max_steps=max_steps,
        best_val_loss=float(best) if isinstance(best, (int, float)) else None,
        started=status.get("started"),
        updated=status.get("updated"),
        parent=status.get("parent"),
        pid=status.get("pid"),
        alert_counts=alert_counts(run_dir),
        message=str(status.get("message") or "") if status else last_log_line(run_dir),
        writer=status.get(rf.STATUS_WRITER),
        imported_from=status.get(rf.STATUS_IMPORTED_FROM),
        skipped=skipped_notes(status_unreadable=not status and status_unreadable(run_dir)),
    )


def _int_or(value, default: int) -> int:
    """An int field of status.json as written, or default when it is something else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def last_log_line(run_dir: str | Path, tail_bytes: int = 4096) -> str:
    """The last non-empty line of train.log: why a background start failed before status.json."""
    try:
        with open(Path(run_dir) / rf.LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def is_run_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and rf.RUN_ID_RE.match(path.name) is not None
        and ((path / rf.STATUS_FILE).exists() or (path / rf.CONFIG_FILE).exists() or (path / rf.LOG_FILE).exists())
    )


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run under runs_dir, newest first. A missing runs_dir has no runs."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    now = time.time()
    return newest_first([run_info(p, now) for p in runs_dir.iterdir() if is_run_dir(p)])


def newest_first(infos: list[RunInfo]) -> list[RunInfo]:
    """Runs in the order every listing shows them: latest start first, then by id."""
    return sorted(infos, key=lambda i: (i.started or 0.0, i.run_id), reverse=True)
