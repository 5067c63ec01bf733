"""What the runs table shows after each control: starting, running, stopping, stopped, crashed,
including a Stop pressed while the run is still starting (issue 16). The trainer is a stand-in that
starts in ~50 ms, so every state is held long enough to be seen."""

import os
import signal
import time

import pytest

from app.runs_table import runs_frame
from trainer import runs
from trainer.errors import RunStateError
from trainer.rundir import run_format as rf
from trainer.rundir import stop_request

# Writes status.json like the writer; on control/stop: "stopping" for a second, then "stopped".
STAND_IN = """
import json, os, sys, time
import psutil
run_dir, delay = sys.argv[1], float(sys.argv[2])
time.sleep(delay)  # importing torch
def write(state, message=""):
    me = psutil.Process()
    status = {"run_id": os.path.basename(run_dir), "state": state, "step": 3, "pid": me.pid,
              "pid_create_time": me.create_time(), "argv": sys.argv, "host": os.uname().nodename,
              "started": time.time(), "updated": time.time(), "parent": None, "message": message}
    with open(os.path.join(run_dir, ".status.tmp"), "w") as f:
        json.dump(status, f)
    os.replace(os.path.join(run_dir, ".status.tmp"), os.path.join(run_dir, "status.json"))
write("running")
stop = os.path.join(run_dir, "control", "stop")
while not os.path.exists(stop):
    time.sleep(0.02)
write("stopping")
time.sleep(1.0)
os.remove(stop)
write("stopped", "control/stop file")
"""


def shown(runs_dir, run_id) -> str:
    frame = runs_frame(runs.list_runs(runs_dir))
    return frame.set_index("run").loc[run_id, "state"]


def wait_shown(runs_dir, run_id, state, timeout_s=20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while shown(runs_dir, run_id) != state:
        assert time.monotonic() < deadline, f"{run_id} never showed {state} (shows {shown(runs_dir, run_id)})"
        time.sleep(0.02)


@pytest.fixture
def launch(runs_dir, spawn):
    def start(run_id, delay=0.0):
        run_dir = runs_dir / run_id
        run_dir.mkdir(exist_ok=True)
        (run_dir / rf.LOG_FILE).write_text("")  # what the launcher creates first
        return spawn(STAND_IN, run_dir, delay)

    return start


def test_start_run_stop_shows_starting_running_stopping_stopped(runs_dir, launch):
    child = launch("a", delay=1.0)
    assert shown(runs_dir, "a") == rf.STARTING
    wait_shown(runs_dir, "a", rf.RUNNING)
    runs.request_stop(runs_dir, "a")
    wait_shown(runs_dir, "a", rf.STOPPING)
    wait_shown(runs_dir, "a", rf.STOPPED)
    assert child.wait(timeout=10) == 0


def test_stop_pressed_while_starting_stops_the_run_once_it_is_up(runs_dir, launch):
    child = launch("s", delay=1.0)
    assert shown(runs_dir, "s") == rf.STARTING
    request = runs.request_stop(runs_dir, "s")  # no status.json yet: unaddressed, for whoever starts there
    assert request.pid is None and shown(runs_dir, "s") == rf.STARTING
    wait_shown(runs_dir, "s", rf.STOPPED)
    assert child.wait(timeout=10) == 0 and stop_request.read(runs_dir / "s") is None


def test_kill_9_shows_crashed_at_once_and_stop_is_then_refused(runs_dir, launch):
    child = launch("k")
    wait_shown(runs_dir, "k", rf.RUNNING)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert shown(runs_dir, "k") == rf.CRASHED  # no 15 s wait for the heartbeat to go stale
    with pytest.raises(RunStateError, match="crashed"):
        runs.request_stop(runs_dir, "k")


def test_a_launch_that_died_before_writing_status_shows_crashed_once_its_log_is_stale(runs_dir):
    run_dir = runs_dir / "dead"
    run_dir.mkdir()
    (run_dir / rf.LOG_FILE).write_text("Traceback ...\n")
    assert shown(runs_dir, "dead") == rf.STARTING
    stale = time.time() - rf.STALE_AFTER_SECONDS - 1
    os.utime(run_dir / rf.LOG_FILE, (stale, stale))
    assert shown(runs_dir, "dead") == rf.CRASHED
