"""What state a run is in: status.json and config.yaml as written, and "crashed" derived.

    from trainer.rundir.status import run_state
    run_state("runs/fc1")  # "running", ..., or "crashed" when its process is gone

The one reader of status.json and config.yaml: every layer and the app read them through here.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from trainer import config as C
from trainer.errors import ConfigError
from trainer.rundir import owner
from trainer.rundir import run_format as rf


def read_status(run_dir: str | Path) -> dict | None:
    """status.json as a dict, or None if it is missing or unreadable (it is replaced atomically,
    so a partial file means something else wrote it). Here, not in trainer.rundir.reader, so that the CLI
    and the trainer do not import pandas and polars to read one small file."""
    return _json_object(Path(run_dir) / rf.STATUS_FILE)


def read_launch(run_dir: str | Path) -> dict | None:
    """launch.json (pid, create time, host of a background launcher's child), or None."""
    data = _json_object(Path(run_dir) / rf.LAUNCH_FILE)
    return data if data is not None and isinstance(data.get("pid"), int) else None


def _json_object(path: Path) -> dict | None:
    """The file's JSON object, or None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def written_by_trainer(status: dict | None) -> bool:
    """True when our trainer wrote the run: a status.json that neither a script's trainer.init
    (writer "api") nor an import (imported_from) wrote. Only such a run's config.yaml says which
    schedule its LR follows."""
    return status is not None and rf.STATUS_WRITER not in status and rf.STATUS_IMPORTED_FROM not in status


def read_config(run_dir: str | Path) -> dict | None:
    """config.yaml as a nested dict, or None if it is missing or not a mapping."""
    path = Path(run_dir) / rf.CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return C.load_yaml(path)
    except (ConfigError, OSError, ValueError):  # ValueError: bytes that are not UTF-8
        return None


def state_from_status(run_dir: Path, status: dict | None, now: float) -> str:
    """run_state for a status.json already read (a listing reads it once for every column)."""
    if status is None:
        # Launched but the trainer has not written status.json yet (or died before it could). The
        # launcher's record names the child: on this host its process decides, however long torch
        # takes to import on a busy machine; without one, train.log's age.
        launched = read_launch(run_dir)
        if launched is not None and launched.get("host") == socket.gethostname():
            return rf.STARTING if owner.same_process(launched) is not None else rf.CRASHED
        log = run_dir / rf.LOG_FILE
        if log.is_file() and now - log.stat().st_mtime < rf.STALE_AFTER_SECONDS:
            return rf.STARTING
        return rf.CRASHED
    state = status.get("state")
    if state not in rf.LIVE_STATES:
        return state if state in rf.STATES else rf.CRASHED
    # On this host the process table decides at once: a live state whose process (same pid and
    # create time) is gone, a zombie or a reused pid is a crash, however fresh its heartbeat.
    if status.get("host") in (None, socket.gethostname()) and isinstance(status.get("pid"), int):
        return state if owner.same_process(status) is not None else rf.CRASHED
    # Written on another host (or with no pid to check): only the heartbeat can tell.
    updated = status.get("updated")
    fresh = isinstance(updated, (int, float)) and now - updated <= rf.STALE_AFTER_SECONDS
    return state if fresh else rf.CRASHED


def run_state(run_dir: str | Path, now: float | None = None) -> str:
    """The run's state, with "crashed" derived: a live state whose process is gone, a zombie, or a
    reused pid (on this host), or whose heartbeat is stale (a run written on another host)."""
    run_dir = Path(run_dir)
    return state_from_status(run_dir, read_status(run_dir), time.time() if now is None else now)
