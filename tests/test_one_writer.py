"""One writer per run: the same run id started twice at once, a start or resume while another process
writes the run, and a lock or status left by a process that is gone (dead, or its pid reused)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest
from app_fixtures import make_run
from engine_tiny import (
    ROOT,
    events,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread)
    start_slow_run,
    tiny_cfg,
    train_losses,
)
from test_runs_resume_fork import make_stopped_run

from trainer import runs
from trainer.errors import RunBusy, RunExists
from trainer.rundir import run_format as rf
from trainer.rundir.writer import open_run

HOLDER = """
import sys, time
from trainer.rundir import lock
held = lock.hold(sys.argv[1], "")
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(runs_dir):
    """holder(run_dir): another process holding run_dir's writer lock, as a live trainer does."""
    procs = []

    def start(run_dir):
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_the_same_run_id_started_twice_at_once_starts_once_and_keeps_the_first_whole(runs_dir):
    first = start_slow_run(tiny_cfg(max_steps=20), runs_dir, "twin", delay_s=0.02)
    second = start_slow_run(tiny_cfg(max_steps=20), runs_dir, "twin", delay_s=0.02)
    outs = [p.communicate(timeout=120)[0] for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 2], outs
    refused = outs[[first.returncode, second.returncode].index(2)]
    errors = [line for line in refused.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and ("already exists" in errors[0] or "is being written by another process" in errors[0])
    run_dir = runs_dir / "twin"
    assert sorted(train_losses(run_dir)) == list(range(1, 21))  # each step once: nobody wrote twice
    assert len(events(run_dir, "start")) == 1
    assert runs.read_status(run_dir)["state"] == rf.FINISHED


def test_a_run_another_process_writes_refuses_a_start_and_a_resume_and_changes_nothing(runs_dir, holder):
    make_run(runs_dir, "busy")
    run_dir = runs_dir / "busy"
    proc = holder(run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(RunBusy, match=rf"run 'busy' is being written by another process \(pid {proc.pid}\); stop it"):
        open_run(runs_dir, "busy", config={"lr": 1.0}, resume_step=10)
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before  # nothing truncated, no config rewritten

    fresh = runs_dir / "fresh"
    fresh.mkdir()
    (fresh / rf.LOG_FILE).write_text("")  # what the launcher leaves: free for a new run
    holder(fresh)
    with pytest.raises(RunBusy, match="pick another --run-id"):
        open_run(runs_dir, "fresh", config={"lr": 1.0})
    assert sorted(p.name for p in fresh.iterdir()) == [rf.LOCK_FILE, rf.LOG_FILE]


def test_a_lock_left_by_a_killed_process_does_not_block_a_resume(runs_dir, holder):
    make_run(runs_dir, "left")
    run_dir = runs_dir / "left"
    proc = holder(run_dir)
    proc.kill()
    proc.wait()
    assert (run_dir / rf.LOCK_FILE).read_text().strip() == str(proc.pid)  # the file stays; the lock does not
    writer = open_run(runs_dir, "left", resume_step=30)
    writer.finish()
    assert max(train_losses(run_dir)) == 30
    with pytest.raises(RunExists):  # and a finished run is still not a new one
        open_run(runs_dir, "left")


def test_a_status_naming_a_reused_pid_does_not_block_a_resume(runs_dir):
    run_dir = make_stopped_run(runs_dir, "reused", state=rf.RUNNING)
    me = psutil.Process()  # alive, but not the process that wrote the status: another create time
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status.update(pid=me.pid, pid_create_time=me.create_time() - 1000, updated=time.time())
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    assert runs.run_state(run_dir) == rf.CRASHED
    assert runs.prepare_resume(runs_dir, "reused", [], environ={}).checkpoint.name == rf.CKPT_LAST
