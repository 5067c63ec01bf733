"""End to end through the CLI: a real background trainer is started, listed, stopped, resumed and forked."""

import json
import threading
import time

import pytest

from trainer import cli, runs
from trainer.rundir import owner, stop_request
from trainer.rundir import run_format as rf
from trainer.runs import process

TINY = [
    "model.n_layer=1",
    "model.n_embd=32",
    "model.n_head=2",
    "block_size=16",
    "batch_size=4",
    "eval_steps=2",
    "eval_interval=1000",
    "sample_interval=1000",
    "sample_length=8",
    "log_interval=2",
    "warmup_steps=2",
    "device=cpu",
]


@pytest.fixture
def launched():
    """Kill any trainer a test launched, whatever happened in the test."""
    before = set(process._children)
    yield
    for pid, popen in list(process._children.items()):
        if pid not in before and popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)
    process.reap()


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def events(run_dir):
    return [json.loads(line) for line in (run_dir / rf.EVENTS_FILE).read_text().splitlines()]


@pytest.mark.slow
def test_background_run_stops_resumes_and_forks(runs_dir, launched, capsys):
    common = ["--runs-dir", str(runs_dir)]
    run_dir = runs_dir / "bg"

    # 1) start in the background: returns at once, the config is validated and printed first
    code = cli.main(["run", "--run-id", "bg", "--background", "--set", *TINY, "max_steps=100000", *common])
    out = capsys.readouterr().out
    assert code == 0 and "resolved config" in out and "started bg in the background" in out
    wait_for(lambda: runs.run_state(run_dir) == rf.RUNNING and runs.read_status(run_dir)["step"] >= 2, 120, "running")
    assert owner.is_trainer_process(runs.read_status(run_dir))

    code = cli.main(["list", *common])
    assert code == 0 and capsys.readouterr().out.splitlines()[1].split()[:3] == ["bg", "char_lm", "running"]

    # 2) stop: the trainer checkpoints and exits by itself after the stop file
    code = cli.main(["stop", "bg", "--wait", "--grace", "60", *common])
    assert code == 0 and "stopped" in capsys.readouterr().out
    status = runs.read_status(run_dir)
    assert status["state"] == rf.STOPPED and "control/stop file" in status["message"]
    assert (run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST).is_file()
    assert "resolved config" in (run_dir / rf.LOG_FILE).read_text()
    stopped_at = status["step"]

    # 3) resume in the background with a longer schedule: at once "starting", so a second resume is refused
    code = cli.main(["resume", "bg", "--background", "--set", f"max_steps={stopped_at + 4}", *common])
    assert code == 0 and "config change: max_steps: 100000 -> " in capsys.readouterr().out
    assert runs.run_state(run_dir) == rf.STARTING
    code = cli.main(["resume", "bg", *common])
    assert code == 2 and capsys.readouterr().err.startswith("error: run 'bg' is starting")
    wait_for(lambda: runs.run_state(run_dir) == rf.FINISHED, 120, "the resumed run to finish")
    assert runs.read_status(run_dir)["step"] == stopped_at + 4
    assert [e["kind"] for e in events(run_dir)].count("config_change") == 1

    # 4) fork with a new learning rate: a new run whose parent is bg
    fork_max = stopped_at + 8
    code = cli.main(
        ["fork", "bg", "--from", "last", "--run-id", "bg-lr", "--set", "lr=5e-4", f"max_steps={fork_max}", *common]
    )
    assert code == 0
    fork_status = runs.read_status(runs_dir / "bg-lr")
    assert (fork_status["state"], fork_status["parent"], fork_status["step"]) == (rf.FINISHED, "bg", fork_max)
    assert "fork" in [e["kind"] for e in events(runs_dir / "bg-lr")]
    infos = {i.run_id: i for i in runs.list_runs(runs_dir)}
    assert infos["bg-lr"].parent == "bg" and infos["bg"].state == rf.FINISHED


def test_data_dependent_config_errors_come_before_anything_is_written(runs_dir, capsys):
    for background in ([], ["--background"]):
        code = cli.main(["run", "--set", "block_size=200000", *background, "--runs-dir", str(runs_dir)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: block_size 200000 exceeds"), err
        assert list(runs_dir.iterdir()) == []


@pytest.mark.slow
def test_resume_survives_the_dashboards_refresh_and_a_stop_while_starting_stops_it(runs_dir, launched, capsys):
    """Issue 16: with the Runs page open (it calls enforce_stop at every refresh), a resume long after
    a stop must train, and a Stop pressed while the resume is still starting must stop it cleanly."""
    common = ["--runs-dir", str(runs_dir)]
    run_dir = runs_dir / "rs"
    assert cli.main(["run", "--run-id", "rs", "--background", "--set", *TINY, "max_steps=100000", *common]) == 0
    wait_for(lambda: (runs.read_status(run_dir) or {}).get("step", 0) >= 2, 120, "running")
    assert cli.main(["stop", "rs", "--wait", "--grace", "60", *common]) == 0
    assert stop_request.read(run_dir) is None, "the honoured request must be consumed"
    old = runs.read_status(run_dir)
    stopped_at = old["step"]
    # What an older trainer (or a kill -9 before it could consume it) leaves: a request for the
    # stopped process, far older than the page's grace period.
    stop_request.write(run_dir, old)
    request = json.loads((run_dir / rf.CONTROL_DIR / rf.STOP_FILE).read_text())
    request["requested"] -= 60
    (run_dir / rf.CONTROL_DIR / rf.STOP_FILE).write_text(json.dumps(request))

    signalled, page_open = [], threading.Event()

    def runs_page():
        while not page_open.wait(0.2):
            signalled.append(runs.enforce_stop(runs_dir, "rs", grace_s=10))

    page = threading.Thread(target=runs_page, daemon=True)
    page.start()
    try:
        assert cli.main(["resume", "rs", "--background", *common]) == 0
        wait_for(
            lambda: runs.run_state(run_dir) == rf.RUNNING and runs.read_status(run_dir)["step"] > stopped_at + 2,
            120,
            "the resumed run to train past its checkpoint",
        )
        assert not any(signalled), "the page signalled the resumed trainer"

        # Stop while a resume is starting: the request names the new process, which honours it at its first step.
        assert cli.main(["stop", "rs", "--wait", "--grace", "60", *common]) == 0
        second_stop = runs.read_status(run_dir)["step"]
        assert cli.main(["resume", "rs", "--background", *common]) == 0
        assert runs.run_state(run_dir) == rf.STARTING
        assert cli.main(["stop", "rs", *common]) == 0
        wait_for(lambda: runs.run_state(run_dir) == rf.STOPPED, 120, "the starting resume to stop")
        status = runs.read_status(run_dir)
        assert "control/stop file" in status["message"] and status["step"] <= second_stop + 1
        assert stop_request.read(run_dir) is None
        assert not any(signalled)
    finally:
        page_open.set()
        page.join(5)
    capsys.readouterr()
