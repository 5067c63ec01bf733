"""Process control: launch in the background, and signal only a process that is verifiably the trainer."""

import json
import os
import time

import pytest
from app_fixtures import fake_checkpoint

from trainer import config as C
from trainer import runs
from trainer.errors import ConfigError, RunExists, RunNotFound, RunStateError
from trainer.rundir import owner
from trainer.rundir import run_format as rf
from trainer.runs import process

# A stand-in trainer (no torch, starts in ~50 ms): writes status.json like the writer, stops with
# state "stopped" on SIGTERM, and on control/stop only if told to honour it.
FAKE_TRAINER = """
import json, os, signal, socket, sys, time
import psutil
run_dir, honour_stop = sys.argv[1], sys.argv[2] == "honour"
started = time.time()
def write(state, message=""):
    me = psutil.Process()
    status = {"run_id": os.path.basename(run_dir), "state": state, "step": 1, "pid": me.pid,
              "pid_create_time": me.create_time(), "argv": sys.argv, "host": socket.gethostname(),
              "started": started, "updated": time.time(), "parent": None, "message": message}
    with open(os.path.join(run_dir, ".status.tmp"), "w") as f:
        json.dump(status, f)
    os.replace(os.path.join(run_dir, ".status.tmp"), os.path.join(run_dir, "status.json"))
def on_term(*_):
    write("stopped", "sigterm")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
os.makedirs(os.path.join(run_dir, "control"), exist_ok=True)
write("running")
deadline = time.time() + 60
while time.time() < deadline:
    if honour_stop and os.path.exists(os.path.join(run_dir, "control", "stop")):
        write("stopped", "stop file")
        sys.exit(0)
    time.sleep(0.02)
"""


def age_request(run_dir, seconds):
    """Make the stop request in run_dir look as if it was made `seconds` ago."""
    path = run_dir / rf.CONTROL_DIR / rf.STOP_FILE
    request = json.loads(path.read_text())
    request["requested"] -= seconds
    path.write_text(json.dumps(request))


@pytest.fixture
def fake_trainer(runs_dir, spawn):
    def start(run_id, honour_stop=True):
        run_dir = runs_dir / run_id
        run_dir.mkdir()
        child = spawn(FAKE_TRAINER, run_dir, "honour" if honour_stop else "ignore")
        deadline = time.time() + 20
        while runs.read_status(run_dir) is None:
            assert time.time() < deadline and child.poll() is None, "fake trainer did not start"
            time.sleep(0.02)
        return child, run_dir

    return start


def test_stop_file_alone_stops_a_cooperative_trainer(runs_dir, fake_trainer):
    child, run_dir = fake_trainer("coop", honour_stop=True)
    assert runs.stop(runs_dir, "coop", grace_s=10) == rf.STOPPED
    assert runs.read_status(run_dir)["message"] == "stop file"
    assert child.wait(timeout=5) == 0


def test_stop_sends_sigterm_after_the_grace_period(runs_dir, fake_trainer):
    child, run_dir = fake_trainer("stubborn", honour_stop=False)
    started = time.monotonic()
    assert runs.stop(runs_dir, "stubborn", grace_s=0.5) == rf.STOPPED
    assert time.monotonic() - started >= 0.5
    assert runs.read_status(run_dir)["message"] == "sigterm"
    assert (run_dir / rf.CONTROL_DIR / rf.STOP_FILE).is_file()


def test_stop_never_signals_a_process_whose_create_time_differs(runs_dir, fake_trainer):
    child, run_dir = fake_trainer("reused", honour_stop=False)
    status = runs.read_status(run_dir)
    status["pid_create_time"] -= 5.0  # as if the trainer died and the kernel gave its pid to this process
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    assert not owner.is_trainer_process(status)
    assert not process.safe_terminate(status)
    with pytest.raises(RunStateError, match="crashed"):  # its process is gone; the pid is another's
        runs.stop(runs_dir, "reused", grace_s=0.3)
    assert not runs.enforce_stop(runs_dir, "reused", grace_s=0)
    time.sleep(0.2)
    assert child.poll() is None, "a process with another create time was signalled"


def test_safe_terminate_refuses_a_process_running_another_program(runs_dir, fake_trainer):
    child, run_dir = fake_trainer("other", honour_stop=False)
    status = runs.read_status(run_dir)
    assert owner.is_trainer_process(status)
    status["argv"] = ["/usr/bin/something-else", "--flag"]
    assert not owner.is_trainer_process(status)
    assert not process.safe_terminate(status)
    time.sleep(0.2)
    assert child.poll() is None


def test_enforce_stop_waits_for_the_grace_period_then_terminates(runs_dir, fake_trainer):
    child, run_dir = fake_trainer("ui", honour_stop=False)
    assert not runs.enforce_stop(runs_dir, "ui", grace_s=0.2)  # no stop requested yet
    runs.request_stop(runs_dir, "ui")
    assert not runs.enforce_stop(runs_dir, "ui", grace_s=30)
    age_request(run_dir, 60)
    assert runs.enforce_stop(runs_dir, "ui", grace_s=30)
    assert child.wait(timeout=10) == 0
    assert runs.read_status(run_dir)["state"] == rf.STOPPED


@pytest.mark.parametrize(
    ("argv", "cmdline", "expected"),
    [
        (["/r/trainer/__main__.py", "run"], ["/usr/bin/python3", "-m", "trainer", "run"], True),
        (["/r/trainer/__main__.py", "run"], ["/usr/bin/python3", "-m", "trainer", "resume"], False),
        (["/r/trainer/__main__.py", "run"], ["/usr/bin/python3", "-m", "other", "run"], False),
        (["train.py", "--lr", "1"], ["python", "/home/u/train.py", "--lr", "1"], True),
        (["train.py", "--lr", "1"], ["python", "/home/u/evil.py", "--lr", "1"], False),
        (["/r/trainer/__main__.py", "run"], [], False),
    ],
)
def test_cmdline_must_match_the_recorded_argv(argv, cmdline, expected):
    assert owner.cmdline_matches({"argv": argv}, cmdline) is expected


def test_launch_starts_a_detached_process_logging_to_train_log(runs_dir):
    (runs_dir / "x").mkdir()
    pid = process.launch(["list"], runs_dir, "x")
    child = process._children[pid]
    try:
        assert os.getsid(pid) == pid  # its own session: a Ctrl-C of the caller does not reach it
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = (runs_dir / "x" / rf.LOG_FILE).read_text()
    assert "RUN ID" in log and "x" in log  # `list` ran against this runs dir (passed as --runs-dir)
    process.reap()
    assert pid not in process._children


def test_launched_run_names_its_directory_and_logs_its_errors_there(runs_dir):
    pid = process.launch(["run", "--set", "lr=0"], runs_dir, "new")
    child = process._children[pid]
    assert child.wait(timeout=60) == 2
    assert child.args[-2:] == ["--run-id", "new"]  # the child writes where the launcher looks
    assert (runs_dir / "new" / rf.LOG_FILE).read_text().startswith("error: lr: 0.0 must be > 0")
    assert sorted(p.name for p in (runs_dir / "new").iterdir()) == sorted([rf.LOG_FILE, rf.LAUNCH_FILE])
    [info] = runs.list_runs(runs_dir)
    # its launch record names the process, which is gone: crashed at once, not when the log is stale
    assert info.message.startswith("error: lr: 0.0") and info.state == rf.CRASHED


def test_launch_of_a_new_run_refuses_an_existing_directory(runs_dir):
    (runs_dir / "taken").mkdir()
    with pytest.raises(RunExists, match="already exists"):
        process.launch(["run", "--run-id", "taken"], runs_dir, "taken")
    assert list((runs_dir / "taken").iterdir()) == []


def test_launch_of_a_resume_needs_the_run(runs_dir):
    with pytest.raises(RunNotFound):
        process.launch(["resume", "ghost"], runs_dir, "ghost")
    assert not (runs_dir / "ghost").exists()


@pytest.fixture
def captured_launch(monkeypatch):
    """Record what start_* would launch, without starting a trainer or importing torch."""
    calls = []
    monkeypatch.setattr(process, "check_data", lambda cfg: None)
    monkeypatch.setattr(process, "launch", lambda argv, runs_dir, run_id, **_: calls.append((argv, run_id)) or 4242)
    return calls


def make_stopped_run(runs_dir, run_id):
    run_dir = runs_dir / run_id
    (run_dir / rf.CHECKPOINT_DIR).mkdir(parents=True)
    fake_checkpoint(run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST)
    (run_dir / rf.CONFIG_FILE).write_text(C.to_yaml(runs.resolve_new(None, [], environ={})))
    (run_dir / rf.STATUS_FILE).write_text(json.dumps({"state": rf.STOPPED, "step": 5, "updated": time.time()}))


def test_background_starters_launch_what_the_cli_would_run(runs_dir, captured_launch):
    from trainer import cli

    make_stopped_run(runs_dir, "a")
    run_id, pid = process.start_new(None, ["lr=3e-4"], runs_dir)
    assert pid == 4242 and run_id.startswith("shakespeare-")
    assert process.start_resume(runs_dir, "a", ["max_steps=4000"]) == 4242
    assert process.start_fork(runs_dir, "a", "last", "b", ["lr=1e-4"]) == 4242
    (new_argv, new_id), (resume_argv, resume_id), (fork_argv, fork_id) = captured_launch
    assert (new_id, resume_id, fork_id) == (run_id, "a", "b")
    parser = cli.build_parser()
    new = parser.parse_args(new_argv)
    assert (new.command, new.run_id, new.sets, new.background) == ("run", run_id, ["lr=3e-4"], False)
    assert new.config == runs.DEFAULT_CONFIG  # absolute: the child starts in the repository root
    resume = parser.parse_args(resume_argv)
    assert (resume.command, resume.run_id, resume.sets) == ("resume", "a", ["max_steps=4000"])
    fork = parser.parse_args(fork_argv)
    assert (fork.command, fork.run_id, fork.from_, fork.new_id, fork.sets) == ("fork", "a", "last", "b", ["lr=1e-4"])


def test_background_starters_refuse_before_launching(runs_dir, captured_launch):
    make_stopped_run(runs_dir, "a")
    with pytest.raises(ConfigError, match="^lr: 0"):
        process.start_new(None, ["lr=0"], runs_dir)
    with pytest.raises(ConfigError, match="^model.n_layer: cannot change"):
        process.start_resume(runs_dir, "a", ["model.n_layer=9"])
    with pytest.raises(RunExists):
        process.start_fork(runs_dir, "a", "last", "a", [])
    assert captured_launch == []


def test_a_background_run_resolves_its_config_once_here_and_checks_its_directory_once(runs_dir, monkeypatch, capsys):
    """`run --set lr=3e-4 --background`: the parent resolves the config once (the child once more, from
    the same arguments), and claims the run directory once (ensure_new_run) before launching."""
    from trainer import cli, runs
    from trainer import config as C
    from trainer.runs import new_run

    resolved, ensured, launched = [], [], []
    real_resolve, real_ensure = C.resolve, new_run.ensure_new_run
    monkeypatch.setattr(C, "resolve", lambda *a, **k: resolved.append(a) or real_resolve(*a, **k))
    for module in (new_run, runs):  # the CLI calls it through trainer.runs, the starter directly
        monkeypatch.setattr(module, "ensure_new_run", lambda *a: ensured.append(a) or real_ensure(*a))
    monkeypatch.setattr(process, "check_data", lambda cfg: None)
    monkeypatch.setattr(process, "launch", lambda argv, runs_dir_, run_id, **_: launched.append(argv) or 4242)
    code = cli.main(["run", "--set", "lr=3e-4", "--background", "--run-id", "once", "--runs-dir", str(runs_dir)])
    assert code == 0 and len(launched) == 1 and "lr=3e-4" in launched[0]
    assert len(resolved) == 1, resolved
    assert len(ensured) == 1, ensured
