"""A stop request is addressed to one process and consumed: a stale one never stops (or signals) a later
process, which is how the open dashboard used to kill every resumed trainer (issue 16)."""

import json
import os
import time

import psutil
import pytest
from test_process_control import FAKE_TRAINER, age_request
from test_runs_state import dead_pid, make_run

import trainer
from trainer import runs
from trainer.errors import RunStateError
from trainer.rundir import run_format as rf
from trainer.rundir import stop_request
from trainer.rundir.writer import open_run
from trainer.runs import process


def me():
    proc = psutil.Process()
    return proc.pid, proc.create_time()


# --- the request itself ----------------------------------------------------------------------


def test_a_request_names_the_process_in_status_and_is_for_it_alone(tmp_path):
    pid, create_time = me()
    request = stop_request.write(tmp_path, {"pid": pid, "pid_create_time": create_time})
    assert stop_request.read(tmp_path) == request
    assert request.is_for(pid, create_time, started=time.time() + 100)  # addressed: start time is moot
    assert not request.is_for(pid, create_time - 5, started=0)  # same pid, another process (reused)
    assert not request.is_for(dead_pid(), create_time, started=0)
    assert request.is_for_status({"pid": pid, "pid_create_time": create_time})
    assert not request.is_for_status(None)


def test_an_unaddressed_request_is_for_a_process_that_began_before_it(tmp_path):
    (tmp_path / rf.CONTROL_DIR).mkdir()
    (tmp_path / rf.CONTROL_DIR / rf.STOP_FILE).write_text("")  # `touch control/stop`
    request = stop_request.read(tmp_path)
    assert request.pid is None
    assert request.is_for(1, 1.0, started=request.requested - 1)
    assert not request.is_for(1, 1.0, started=request.requested + 1)
    # psutil's create time is only good to a second against the wall clock: escalation needs a margin
    assert not request.is_for_status({"pid": 1, "pid_create_time": request.requested - 0.5})
    assert request.is_for_status({"pid": 1, "pid_create_time": request.requested - 2})


@pytest.mark.parametrize("text", ["requested at 17.0 by pid 12\n", "[1, 2]", "{not json", '{"pid": "12"}'])
def test_old_and_malformed_requests_read_as_unaddressed(tmp_path, text):
    (tmp_path / rf.CONTROL_DIR).mkdir()
    (tmp_path / rf.CONTROL_DIR / rf.STOP_FILE).write_text(text)
    request = stop_request.read(tmp_path)
    assert request is not None and request.pid is None


def test_no_file_is_no_request(tmp_path):
    assert stop_request.read(tmp_path) is None


# --- the trainer's side: the writer ----------------------------------------------------------


def test_the_writer_honours_a_request_for_its_process_and_consumes_it_when_it_ends(runs_dir):
    run = open_run(runs_dir, "w")
    assert not run.stop_requested()
    runs.request_stop(runs_dir, "w")
    assert run.stop_requested()
    run.finish(rf.STOPPED)
    assert stop_request.read(runs_dir / "w") is None


def test_the_writer_ignores_and_discards_a_request_left_for_an_ended_process(runs_dir):
    run = open_run(runs_dir, "w")
    run.finish(rf.STOPPED)
    stale = {"pid": dead_pid(), "pid_create_time": time.time() - 100}
    stop_request.write(runs_dir / "w", stale)
    # while it is there, it is not a request for this process
    assert not stop_request.Watch(runs_dir / "w", *me(), trainer.PROCESS_STARTED).requested()
    resumed = open_run(runs_dir, "w", resume_step=0)
    assert stop_request.read(runs_dir / "w") is None, "a request for an ended process must be discarded"
    assert not resumed.stop_requested()
    resumed.finish(rf.STOPPED)


def test_the_writer_keeps_a_request_made_while_its_process_was_starting(runs_dir):
    (runs_dir / "new" / rf.CONTROL_DIR).mkdir(parents=True)
    (runs_dir / "new" / rf.LOG_FILE).write_text("")  # a launcher's directory
    runs.request_stop(runs_dir, "new")  # Stop pressed before the trainer wrote status.json
    run = open_run(runs_dir, "new")  # the directory is still free: only train.log and control/stop
    assert run.stop_requested()
    run.finish(rf.STOPPED)
    assert stop_request.read(runs_dir / "new") is None


def test_a_request_to_a_run_with_no_status_and_no_launch_is_refused(runs_dir):
    (runs_dir / "empty" / rf.CHECKPOINT_DIR).mkdir(parents=True)
    (runs_dir / "empty" / rf.CONFIG_FILE).write_text("task: char_lm\n")
    with pytest.raises(RunStateError, match="no status.json"):
        runs.request_stop(runs_dir, "empty")


# --- who gets signalled ------------------------------------------------------------------------


@pytest.fixture
def fake(runs_dir, spawn):
    """Start the stand-in trainer of test_process_control (ignores the stop file) for a run directory."""

    def start(run_id):
        run_dir = runs_dir / run_id
        run_dir.mkdir(exist_ok=True)
        before = (runs.read_status(run_dir) or {}).get("pid")
        child = spawn(FAKE_TRAINER, run_dir, "ignore")
        deadline = time.time() + 20
        while (runs.read_status(run_dir) or {}).get("pid") in (None, before):
            assert time.time() < deadline and child.poll() is None, "fake trainer did not start"
            time.sleep(0.02)
        return child

    return start


def test_a_stale_request_never_signals_the_process_that_resumed_the_run(runs_dir, fake):
    first = fake("r")
    runs.request_stop(runs_dir, "r")
    first.kill()  # the first process ended without consuming its request (kill -9)
    first.wait()
    age_request(runs_dir / "r", 60)  # long past any grace period, as with the dashboard left open
    second = fake("r")  # the run resumed by another process
    assert runs.run_state(runs_dir / "r") == rf.RUNNING
    for _ in range(5):  # the Runs page calls this at every refresh
        assert not runs.enforce_stop(runs_dir, "r", grace_s=10)
    time.sleep(0.2)
    assert second.poll() is None, "the resumed process was signalled by a request made for its predecessor"


def test_escalation_waits_for_the_requests_own_grace(runs_dir, fake):
    child = fake("g")
    runs.request_stop(runs_dir, "g")
    assert not runs.enforce_stop(runs_dir, "g", grace_s=30)
    age_request(runs_dir / "g", 29)
    assert not runs.enforce_stop(runs_dir, "g", grace_s=30)
    age_request(runs_dir / "g", 2)
    assert runs.enforce_stop(runs_dir, "g", grace_s=30)
    assert child.wait(timeout=10) == 0


def test_stop_with_wait_signals_only_the_process_it_asked(runs_dir, fake, monkeypatch):
    first = fake("s")
    real_request_stop = runs.control.request_stop

    def request_then_replace(runs_dir_, run_id):
        request = real_request_stop(runs_dir_, run_id)
        first.kill()  # the process asked dies, and another takes over the run before the grace ends
        first.wait()
        replaced.append(fake("s"))
        return request

    replaced = []
    monkeypatch.setattr(runs.control, "request_stop", request_then_replace)
    assert runs.stop(runs_dir, "s", grace_s=0.3) == rf.RUNNING
    assert replaced[0].poll() is None, "stop --wait signalled a process it had not asked"


def test_resume_launch_discards_the_previous_processs_request(runs_dir, monkeypatch):
    run_dir = make_run(runs_dir, "prev", state=rf.STOPPED)
    stop_request.write(run_dir, {"pid": dead_pid(), "pid_create_time": 1.0})
    seen = []

    class NoPopen:
        def __init__(self, *args, **kwargs):
            seen.append(stop_request.read(run_dir))
            self.pid = os.getpid()

        def poll(self):
            return None

    monkeypatch.setattr(process.subprocess, "Popen", NoPopen)
    process.launch(["resume", "prev"], runs_dir, "prev")
    process._children.pop(os.getpid(), None)
    assert seen == [None], "the request must be gone before the resumed process starts"
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    assert status["state"] == rf.STARTING and status["pid"] == os.getpid()
