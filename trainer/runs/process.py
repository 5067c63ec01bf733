"""Background trainer processes: start them, recognise them, and signal only the right one.

    from trainer.runs import process
    run_id, pid = process.start_new("configs/shakespeare_char.yaml", ["max_steps=200"], "runs")
    pid = process.launch(["resume", run_id], "runs", run_id)   # the low-level form

A launched trainer is `python -m trainer <argv>` in its own session (it outlives the caller:
a Streamlit restart, a closed terminal), with stdout and stderr in runs/<id>/train.log. The run
directory, not a process handle, is the source of truth: status.json names the pid, its create
time and its argv, and every check here compares the live process against those, so a pid the
kernel has handed to another program is never mistaken for the trainer or sent a signal.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from trainer import PROJECT_ROOT as ROOT
from trainer import config as C
from trainer.errors import RunExists
from trainer.rundir import owner, sharing, stop_request
from trainer.rundir import run_format as rf
from trainer.rundir.files import atomic_write_text
from trainer.rundir.status import read_status
from trainer.runs import new_run, resume

# Commands that create a run directory, so launch() refuses one that already exists.
_CREATING_COMMANDS = ("run", "fork")

# Popen handles of trainers this process started: polled so that a finished child does not stay
# a zombie (a zombie's pid still "exists", and its cmdline can no longer be read).
_children: dict[int, subprocess.Popen] = {}


def reap() -> None:
    """Collect the exit status of finished children started by launch()."""
    for pid, popen in list(_children.items()):
        if popen.poll() is not None:
            del _children[pid]


def launch(argv: list[str], runs_dir: str | Path, run_id: str, threads: int | None = None) -> int:
    """Start `python -m trainer <argv>` in the background for run_id; return its pid.

    argv is what follows `python -m trainer` (e.g. ["resume", "my-run"]); --runs-dir is added as
    an absolute path when absent, since the child runs from the repository root. For `run` and
    `fork` the run directory must not exist yet: it is created holding only train.log, which the
    writer accepts. For `resume` the log is appended to. threads: the run's share of the cores
    (trainer.rundir.sharing), given to OpenMP and MKL in the child unless the caller's environment
    already sets them.
    """
    reap()
    runs_dir = Path(runs_dir).resolve()
    run_dir = rf.run_path(runs_dir, run_id)
    argv = [str(a) for a in argv]
    if "--runs-dir" not in argv:
        argv += ["--runs-dir", str(runs_dir)]
    if argv and argv[0] in _CREATING_COMMANDS and "--run-id" not in argv:
        argv += ["--run-id", run_id]  # else the child would name the run itself, elsewhere
    if argv and argv[0] in _CREATING_COMMANDS:
        runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise RunExists(f"run {run_id!r} already exists in {runs_dir}; pick another run id") from None
    else:
        rf.existing_run_path(runs_dir, run_id)
    if argv and argv[0] == "resume":
        # The previous process has ended (the resume checks refuse a live run), so a request left
        # for it is spent; kept, it would look like a request to stop the process started here.
        stop_request.discard(run_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # train.log should show progress as it happens
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, str(threads))
    with open(run_dir / rf.LOG_FILE, "ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "trainer", *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives Ctrl-C and restarts of whoever launched it
        )
    _children[popen.pid] = popen
    if argv and argv[0] == "resume":
        _claim_status(run_dir, popen.pid, argv)
    elif argv and argv[0] in _CREATING_COMMANDS:
        _record_launch(run_dir, popen.pid)
    return popen.pid


def _record_launch(run_dir: Path, pid: int) -> None:
    """launch.json: which process will write this new run, so that until its status.json exists the
    run reads "starting" while that process lives and "crashed" at once when it dies, not by the
    age of train.log (torch's import alone can take longer than STALE_AFTER_SECONDS on a busy host)."""
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        return  # it has already ended: train.log's age says crashed soon enough
    record = {"pid": pid, "pid_create_time": create_time, "host": socket.gethostname()}
    atomic_write_text(run_dir / rf.LAUNCH_FILE, json.dumps(record))


def _claim_status(run_dir: Path, pid: int, argv: list[str]) -> None:
    """Mark a run being resumed as starting, owned by the new child, until its writer takes over.

    Without this the run still reads "stopped" for the seconds the child spends importing torch,
    and a second Resume click would start a second trainer on the same directory. The child's own
    resume check accepts a live status that names its own pid.
    """
    path = run_dir / rf.STATUS_FILE
    status = read_status(run_dir)
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        return
    if status is None:
        return  # the child's writer will write a fresh status anyway
    status.update(
        state=rf.STARTING,
        pid=pid,
        pid_create_time=create_time,
        argv=[str(ROOT / "trainer" / "__main__.py"), *argv],  # what the child's sys.argv will be
        updated=time.time(),
        message=f"resuming (launched by pid {os.getpid()})",
    )
    atomic_write_text(path, json.dumps(status, indent=1))


def safe_terminate(status: dict | None, sig: int = signal.SIGTERM) -> bool:
    """Send sig to the run's process only if it is verifiably the trainer; True if sent.

    A pidfd pins the process before it is checked, so the pid cannot be reused between the check
    and the signal.
    """
    if not status or not isinstance(status.get("pid"), int):
        return False
    pid = status["pid"]
    pidfd = None
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False  # no such process
    try:
        if not owner.is_trainer_process(status):
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


# --- starting in the background (the dashboard and `--background` share these) ----------------


def _set_args(sets: list[str] | None) -> list[str]:
    return [arg for pair in sets or [] for arg in ("--set", pair)]


def check_data(cfg) -> None:
    """Raise the data-dependent ConfigErrors (block_size beyond the data, ...) without writing:
    a background trainer would otherwise only report them in its train.log."""
    # Lazy for start-up cost alone: engine imports torch (seconds), which `list`, `stop` and the
    # dashboard never need; only a run about to start does.
    from trainer.training import engine

    engine.check_fits(engine.build_task(cfg), cfg)


def start_new(
    config_path: str | Path | None,
    sets: list[str] | None,
    runs_dir: str | Path,
    run_id: str | None = None,
    cfg: C.Config | None = None,
) -> tuple[str, int]:
    """Validate a new run's config, then start it in the background; returns (run_id, pid).

    cfg: the config already resolved from config_path and sets (the CLI has), so it is not
    resolved twice; the child resolves it once more from the same arguments."""
    if cfg is None:
        cfg = new_run.resolve_new(config_path, sets)
    run_id = run_id or new_run.new_run_id(cfg.task, runs_dir)
    new_run.ensure_new_run(runs_dir, run_id)
    check_data(cfg)
    sets = _placed(cfg, sets, runs_dir)
    config_file = Path(config_path or new_run.DEFAULT_CONFIG).resolve()  # the child starts in the repo root
    argv = ["run", "--config", str(config_file), "--run-id", run_id, *_set_args(sets)]
    return run_id, launch(argv, runs_dir, run_id, threads=sharing.thread_budget(cfg.threads, runs_dir, run_id).threads)


def _placed(cfg: C.Config, sets: list[str] | None, runs_dir: str | Path) -> list[str]:
    """sets, plus device=cuda:K when the config says auto and several GPUs are here: the one with
    room (no run of ours on it, the most free memory), as trainer.rundir.sharing.pick_gpu decides."""
    device = sharing.place_on_gpu(cfg.device, runs_dir)
    return [*(sets or []), f"device={device}"] if device else list(sets or [])


def start_resume(
    runs_dir: str | Path, run_id: str, sets: list[str] | None = None, prepared: resume.Prepared | None = None
) -> int:
    """Validate a resume (same rules as the CLI), then resume in the background; returns the pid.
    prepared: the caller's own prepare_resume result for the same arguments, so it is not redone."""
    prepared = prepared or resume.prepare_resume(runs_dir, run_id, sets)
    check_data(prepared.config)
    threads = sharing.thread_budget(prepared.config.threads, runs_dir, run_id).threads
    return launch(["resume", run_id, *_set_args(sets)], runs_dir, run_id, threads=threads)


def start_fork(
    runs_dir: str | Path,
    run_id: str,
    from_: str | int,
    new_id: str,
    sets: list[str] | None = None,
    prepared: resume.Prepared | None = None,
) -> int:
    """Validate a fork, then start it in the background as run new_id; returns the pid."""
    prepared = prepared or resume.prepare_fork(runs_dir, run_id, from_, new_id, sets)
    check_data(prepared.config)
    sets = _placed(prepared.config, sets, runs_dir)
    argv = ["fork", run_id, "--from", str(from_), "--run-id", new_id, *_set_args(sets)]
    return launch(
        argv, runs_dir, new_id, threads=sharing.thread_budget(prepared.config.threads, runs_dir, new_id).threads
    )
