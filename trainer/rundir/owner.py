"""Which process a run belongs to: status.json names a pid, its create time and its argv, and a
live process counts as the run's only when all three match, so a pid the kernel has handed to
another program is never mistaken for the trainer. Observation only: nothing here sends a signal
(trainer.runs.process does, after asking here).

    from trainer.rundir import owner
    owner.same_process(status)        # the live process status.json describes, or None
    owner.is_trainer_process(status)  # ... and it runs the program status.json recorded
"""

from __future__ import annotations

import os
import time

import psutil

from trainer.rundir import run_format as rf


def _process(pid) -> psutil.Process | None:
    """The live, non-zombie process with this pid, or None."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def same_process(status: dict) -> psutil.Process | None:
    """The process status.json describes, if it is still alive: pid and create time match.

    This is what crash detection needs: it also recognises a user's own training script that
    writes through trainer.writer, whatever its command line.
    """
    proc = _process(status.get("pid"))
    expected = status.get("pid_create_time")
    if proc is None or not isinstance(expected, (int, float)):
        return None
    try:
        if abs(proc.create_time() - float(expected)) > rf.CREATE_TIME_TOLERANCE_S:
            return None  # the pid now belongs to another process
    except psutil.Error:
        return None
    return proc


def cmdline_matches(status: dict, cmdline: list[str]) -> bool:
    """Does this command line belong to the program status.json recorded?

    status["argv"] is the trainer's sys.argv: for `python -m trainer run ...` that is
    [".../trainer/__main__.py", "run", ...], while the kernel's cmdline is
    ["python", "-m", "trainer", "run", ...]. So: the arguments must be the cmdline's tail, and the
    program must be named (the trainer module, or the script's file name).
    """
    if not cmdline:
        return False
    argv = status.get("argv")
    if not isinstance(argv, list) or not argv:
        return any("trainer" in part for part in cmdline)
    args = [str(a) for a in argv[1:]]
    if args and cmdline[-len(args) :] != args:
        return False
    program = str(argv[0])
    head = cmdline[: len(cmdline) - len(args)]
    if program.endswith(os.path.join("trainer", "__main__.py")):
        return "trainer" in head
    name = os.path.basename(program)
    return any(os.path.basename(part) == name for part in head)


def is_trainer_process(status: dict | None) -> bool:
    """True when the run's recorded process is alive, not a zombie, and is the same program."""
    if not status:
        return False
    proc = same_process(status)
    if proc is None:
        return False
    try:
        return cmdline_matches(status, proc.cmdline())
    except psutil.Error:
        return False


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait until pid has exited (or is a zombie); True if it did within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _process(pid) is None:
            return True
        time.sleep(0.05)
    return _process(pid) is None
