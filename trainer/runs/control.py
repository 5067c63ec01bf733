"""Stopping a live run from outside: a stop request first, SIGTERM to the process it named after.

    from trainer.runs.control import request_stop, stop
    request_stop("runs", "fc1")      # returns at once; the run stops after its current step
    stop("runs", "fc1")              # the same, then waits (and escalates) until it is not live

A run has stop_grace_s() to honour a stop request before SIGTERM: $TRAINER_STOP_GRACE_S, else 10 s
(a script that saves a large checkpoint when its should_stop() turns true may need longer).

Every signal this package sends goes through trainer.runs.process.safe_terminate.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from trainer.errors import ConfigError, RunStateError
from trainer.rundir import owner, stop_request
from trainer.rundir import run_format as rf
from trainer.rundir.status import read_status, run_state, state_from_status
from trainer.runs import process

STOP_GRACE_ENV = "TRAINER_STOP_GRACE_S"
DEFAULT_STOP_GRACE_S = 10.0


def stop_grace_s(environ=None) -> float:
    """Seconds a run has to honour a stop request before it is sent SIGTERM (the dashboard's Stop,
    `python -m trainer stop --wait`): $TRAINER_STOP_GRACE_S, else 10."""
    raw = (os.environ if environ is None else environ).get(STOP_GRACE_ENV, "").strip()
    if not raw:
        return DEFAULT_STOP_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{STOP_GRACE_ENV}={raw!r}: give the seconds a run has to stop before SIGTERM, a positive number "
            f"(default {DEFAULT_STOP_GRACE_S:g})"
        )
    return value


def _refuse_unless_live(run_id: str, state: str, action: str) -> None:
    if state in rf.LIVE_STATES:
        return
    if state == rf.CRASHED:
        raise RunStateError(
            f"run {run_id!r} crashed (its process is gone), so there is nothing to {action}; "
            f"resume it with `python -m trainer resume {run_id}`"
        )
    raise RunStateError(f"run {run_id!r} is {state}, so there is nothing to {action}")


def request_stop(runs_dir: str | Path, run_id: str) -> stop_request.StopRequest:
    """Ask a live run to stop: it finishes the step, checkpoints, and exits with state stopped.

    The request names the process status.json names, so it can never stop a later one (a resume).
    A run launched but not yet past its imports has no status: the request is then unaddressed,
    and the trainer that starts there honours it at its first step.
    """
    run_dir = rf.existing_run_path(runs_dir, run_id)
    status = read_status(run_dir)
    state = run_state(run_dir)
    if status is None and state != rf.STARTING:
        what = "an unreadable" if (run_dir / rf.STATUS_FILE).exists() else "no"
        raise RunStateError(f"run {run_id!r} has {what} {rf.STATUS_FILE}, so there is no process to stop")
    _refuse_unless_live(run_id, state, "stop")
    return stop_request.write(run_dir, status)


def _escalate(run_dir: Path, request: stop_request.StopRequest) -> bool:
    """SIGTERM the process the request was for, if it is still the run's live trainer."""
    status = read_status(run_dir)
    if not request.is_for_status(status):
        return False  # the request was for a process that has ended (the run was resumed since)
    if state_from_status(run_dir, status, time.time()) not in rf.LIVE_STATES:
        return False
    return process.safe_terminate(status)


def enforce_stop(runs_dir: str | Path, run_id: str, grace_s: float | None = None) -> bool:
    """Non-blocking escalation for a UI refresh loop: SIGTERM the trainer if a stop was requested
    for it more than grace_s (None: stop_grace_s()) ago and it is still live. True if a signal was sent.

    Only the process the request names is signalled, and only after that request's own grace: a
    request left from an earlier process is never a reason to signal the current one."""
    grace_s = stop_grace_s() if grace_s is None else grace_s
    run_dir = rf.existing_run_path(runs_dir, run_id)
    request = stop_request.read(run_dir)
    if request is None or request.age() < grace_s:
        return False
    return _escalate(run_dir, request)


def _wait_not_live(run_dir: Path, timeout_s: float, poll_s: float = 0.1) -> str:
    deadline = time.monotonic() + timeout_s
    state = run_state(run_dir)
    while state in rf.LIVE_STATES and time.monotonic() < deadline:
        time.sleep(poll_s)
        state = run_state(run_dir)
    return state


def stop(runs_dir: str | Path, run_id: str, grace_s: float | None = None) -> str:
    """Stop a live run and wait for it: the stop request first; if the run is still live after
    grace_s (None: stop_grace_s()), SIGTERM, but only to the process the request was for, and only when its pid, create
    time and command line match status.json. Returns the state afterwards (stopped, or still live
    if nothing more could be done safely)."""
    grace_s = stop_grace_s() if grace_s is None else grace_s
    run_dir = rf.existing_run_path(runs_dir, run_id)
    request = request_stop(runs_dir, run_id)
    state = _wait_not_live(run_dir, grace_s)
    if state not in rf.LIVE_STATES:
        return state
    if request.pid is None:
        # Asked while the run was starting: address the process that has written its status since.
        request = stop_request.write(run_dir, read_status(run_dir))
    if _escalate(run_dir, request):
        owner.wait_exit(read_status(run_dir)["pid"], grace_s)
        state = _wait_not_live(run_dir, 1.0)
    return state
