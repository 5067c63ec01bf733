"""trainer.init's online doctor in its own process (trainer/doctor/follow.py, trainer/api/doctor_process.py):
it follows the files, its alerts reach the run, it dies with the training process, and its death
never stops training."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

import trainer
from trainer import runs
from trainer.doctor import follow
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records

ROOT = Path(__file__).resolve().parents[1]


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_follower_reads_the_files_and_reports_a_non_finite_loss_once(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    rows = [{"step": s, "time": 100.0 + s, rf.TRAIN_LOSS: 1.0 / s if s < 6 else None} for s in range(1, 10)]
    (run_dir / rf.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    read_end, write_end = os.pipe()
    os.write(write_end, follow.FINISH)  # the run has ended: read the files to the end and exit
    out = io.StringIO()
    with open(read_end, "rb") as stdin:
        assert follow.follow(run_dir, os.getppid(), stdin=stdin, out=out) == 0
    os.close(write_end)
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(m["alert"]["code"], m["step"]) for m in messages] == [("non_finite", 6)]


def test_the_doctor_process_ends_when_the_training_process_is_killed(runs_dir):
    script = textwrap.dedent(
        f"""
        import time, trainer
        run = trainer.init(run_id="killed", runs_dir={str(runs_dir)!r})
        for step in range(20):
            run.log({{"train/loss": 1.0}}, step=step)
        run.flush()
        print(run.doctor.pid, flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    doctor = None
    try:
        doctor = psutil.Process(int(parent.stdout.readline()))
        assert doctor.is_running() and doctor.ppid() == parent.pid
        parent.kill()  # SIGKILL: no finish(), no atexit
        parent.wait()
        wait_until(lambda: not doctor.is_running() or doctor.status() == psutil.STATUS_ZOMBIE, timeout=10)
    finally:
        parent.kill()
        parent.wait()
        if doctor is not None and doctor.is_running():  # orphaned: the test failed, leave nothing behind
            doctor.kill()


def test_a_doctor_process_that_dies_leaves_the_run_logging_and_says_so_once(runs_dir, capsys):
    run = trainer.init(run_id="orphan", runs_dir=runs_dir)
    for step in range(5):
        run.log({rf.TRAIN_LOSS: 1.0}, step=step)
    run.flush()
    os.kill(run.doctor.pid, signal.SIGKILL)
    wait_until(lambda: (run.flush() or True) and run.doctor.process is None)  # the flush thread noticed
    for step in range(5, 10):
        run.log({rf.TRAIN_LOSS: float("nan")}, step=step)  # no doctor left to see it
    run.finish()
    status = runs.read_status(runs_dir / "orphan")
    assert status["state"] == rf.FINISHED and status["step"] == 9
    assert [r["step"] for r in read_records(runs_dir / "orphan" / rf.METRICS_FILE)] == list(range(10))
    events = read_records(runs_dir / "orphan" / rf.EVENTS_FILE)
    assert [e["code"] for e in events if e["kind"] == "alert"] == ["doctor_unavailable"]
    said = [line for line in capsys.readouterr().err.splitlines() if "online doctor" in line]
    assert len(said) == 1 and "stopped (exit code -9)" in said[0] and "goes on without it" in said[0]
