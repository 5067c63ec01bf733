"""Stopping a live run from outside: the control/stop file first, SIGTERM to the right process after.

    from trainer.runs.control import request_stop, stop
    request_stop("runs", "fc1")      # returns at once; the run stops after its current step
    stop("runs", "fc1", grace_s=10)  # the same, then waits (and escalates) until it is not live
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from trainer import process
from trainer import run_format as rf
from trainer.errors import RunStateError
from trainer.runs.state import read_status, run_state


def _refuse_unless_live(run_id: str, state: str, action: str) -> None:
    if state in rf.LIVE_STATES:
        return
    if state == rf.CRASHED:
        raise RunStateError(
            f"run {run_id!r} crashed (its process is gone), so there is nothing to {action}; "
            f"resume it with `python -m trainer resume {run_id}`"
        )
    raise RunStateError(f"run {run_id!r} is {state}, so there is nothing to {action}")


def request_stop(runs_dir: str | Path, run_id: str) -> Path:
    """Ask a live run to stop: it finishes the step, checkpoints, and exits with state stopped."""
    run_dir = rf.existing_run_path(runs_dir, run_id)
    if read_status(run_dir) is None:
        # A stop file in a directory holding only train.log would make the writer refuse it.
        raise RunStateError(f"run {run_id!r} has not written its status yet; try again in a few seconds")
    _refuse_unless_live(run_id, run_state(run_dir), "stop")
    control = run_dir / rf.CONTROL_DIR
    control.mkdir(exist_ok=True)
    stop_file = control / rf.STOP_FILE
    stop_file.write_text(f"requested at {time.time():.3f} by pid {os.getpid()}\n", encoding="utf-8")
    return stop_file


def enforce_stop(runs_dir: str | Path, run_id: str, grace_s: float = 10.0) -> bool:
    """Non-blocking escalation for a UI refresh loop: SIGTERM the trainer if a stop was requested
    more than grace_s ago and the run is still live. True if a signal was sent."""
    run_dir = rf.existing_run_path(runs_dir, run_id)
    stop_file = run_dir / rf.CONTROL_DIR / rf.STOP_FILE
    try:
        age = time.time() - stop_file.stat().st_mtime
    except OSError:
        return False
    if age < grace_s or run_state(run_dir) not in rf.LIVE_STATES:
        return False
    return process.safe_terminate(read_status(run_dir))


def _wait_not_live(run_dir: Path, timeout_s: float, poll_s: float = 0.1) -> str:
    deadline = time.monotonic() + timeout_s
    state = run_state(run_dir)
    while state in rf.LIVE_STATES and time.monotonic() < deadline:
        time.sleep(poll_s)
        state = run_state(run_dir)
    return state


def stop(runs_dir: str | Path, run_id: str, grace_s: float = 10.0) -> str:
    """Stop a live run and wait for it: the stop file first; if the run is still live after
    grace_s, SIGTERM, but only to a process whose pid, create time and command line match
    status.json. Returns the state afterwards (stopped, or still live if nothing more could be
    done safely)."""
    run_dir = rf.existing_run_path(runs_dir, run_id)
    request_stop(runs_dir, run_id)
    state = _wait_not_live(run_dir, grace_s)
    if state not in rf.LIVE_STATES:
        return state
    status = read_status(run_dir)
    if process.safe_terminate(status):
        process.wait_exit(status["pid"], grace_s)
        state = _wait_not_live(run_dir, 1.0)
    return state
