"""Run listing and state: crashed is derived from a stale heartbeat plus a gone (or reused) pid."""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from trainer import config as C
from trainer import runs
from trainer.errors import ConfigError, RunStateError
from trainer.rundir import run_format as rf
from trainer.rundir import stop_request
from trainer.runs import new_run


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_run(runs_dir, run_id, config=None, **status):
    """A fabricated run directory with config.yaml and status.json (defaults: a live run of this process)."""
    run_dir = runs_dir / run_id
    (run_dir / rf.CHECKPOINT_DIR).mkdir(parents=True)
    (run_dir / rf.CONTROL_DIR).mkdir()
    cfg = C.resolve(None, config or []).to_dict()
    (run_dir / rf.CONFIG_FILE).write_text(yaml.safe_dump(cfg))
    me = psutil.Process()
    record = {
        "format_version": rf.FORMAT_VERSION,
        "run_id": run_id,
        "state": rf.RUNNING,
        "step": 10,
        "pid": me.pid,
        "pid_create_time": me.create_time(),
        "argv": list(sys.argv),
        "host": __import__("socket").gethostname(),
        "started": time.time() - 60,
        "updated": time.time(),
        "parent": None,
        "message": "",
    }
    record.update(status)
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(record))
    return run_dir


STALE = time.time() - rf.STALE_AFTER_SECONDS - 30


def test_default_runs_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert runs.default_runs_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(runs.RUNS_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    assert runs.default_runs_dir() == tmp_path / "runs"


def test_new_run_id_is_readable_valid_and_unique(runs_dir):
    now = time.mktime((2026, 11, 23, 14, 25, 1, 0, 0, -1))
    new_run._issued_ids.clear()
    first = runs.new_run_id("char_lm", runs_dir, now=now)
    assert first == "shakespeare-20261123-142501"
    (runs_dir / first).mkdir()
    new_run._issued_ids.clear()  # as in another process: the directory alone makes the id taken
    second = runs.new_run_id("char_lm", runs_dir, now=now)
    assert second == first + "-2"
    assert runs.new_run_id("char_lm", runs_dir, now=now) == first + "-3"  # issued, not yet created
    assert rf.validate_run_id(runs.new_run_id("text_diffusion", runs_dir)).startswith("text-diffusion-")


def test_resolve_new_uses_the_shakespeare_preset_then_env_then_set():
    cfg = runs.resolve_new(None, ["lr=3e-4"], environ={"BATCH_SIZE": "7"})
    assert (cfg.task, cfg.max_steps, cfg.batch_size, cfg.lr) == ("char_lm", 2000, 7, 3e-4)


def test_off_on_yes_no_from_set_and_env_stay_text_for_text_keys_and_work_for_bool_keys():
    cfg = runs.resolve_new(None, ["amp=off", "doctor.enabled=no"], environ={})
    assert (cfg.amp, cfg.doctor.enabled) == ("off", False)
    assert runs.resolve_new(None, [], environ={"AMP": "off"}).amp == "off"


def test_unquoted_off_in_a_yaml_file_says_to_quote_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: char_lm\namp: off\n")
    with pytest.raises(ConfigError, match='amp: False is a boolean to YAML.*amp: "off"'):
        runs.resolve_new(path, [], environ={})


def test_stale_heartbeat_with_dead_pid_is_crashed(runs_dir):
    run_dir = make_run(runs_dir, "dead", updated=STALE, pid=dead_pid())
    assert runs.run_state(run_dir) == rf.CRASHED


def test_stale_heartbeat_with_live_process_is_still_running(runs_dir):
    run_dir = make_run(runs_dir, "slow", updated=STALE)  # this very process: alive
    assert runs.run_state(run_dir) == rf.RUNNING


def test_a_dead_pid_on_this_host_is_crashed_at_once_whatever_the_heartbeat(runs_dir):
    run_dir = make_run(runs_dir, "killed", pid=dead_pid())  # kill -9 a moment ago: heartbeat still fresh
    assert runs.run_state(run_dir) == rf.CRASHED


def test_a_run_on_another_host_is_judged_by_its_heartbeat_alone(runs_dir):
    fresh = make_run(runs_dir, "remote", pid=dead_pid(), host="gpu-box-7")
    assert runs.run_state(fresh) == rf.RUNNING  # its pid means nothing here
    stale = make_run(runs_dir, "remote-gone", pid=dead_pid(), host="gpu-box-7", updated=STALE)
    assert runs.run_state(stale) == rf.CRASHED


def test_reused_pid_is_crashed(runs_dir):
    # Same pid as a live process, but that process was created at another time.
    me = psutil.Process()
    run_dir = make_run(runs_dir, "reused", updated=STALE, pid_create_time=me.create_time() - 100)
    assert runs.run_state(run_dir) == rf.CRASHED


def test_zombie_trainer_is_crashed(runs_dir):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        create_time = psutil.Process(child.pid).create_time()
        deadline = time.time() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
            time.sleep(0.02)
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
        run_dir = make_run(runs_dir, "zombie", updated=STALE, pid=child.pid, pid_create_time=create_time)
        assert runs.run_state(run_dir) == rf.CRASHED
    finally:
        child.wait()


def test_final_states_are_kept_whatever_the_heartbeat(runs_dir):
    for state in (rf.FINISHED, rf.STOPPED, rf.FAILED):
        run_dir = make_run(runs_dir, state, state=state, updated=STALE, pid=dead_pid())
        assert runs.run_state(run_dir) == state


def test_launched_run_without_status_is_starting_then_crashed(runs_dir):
    run_dir = runs_dir / "launched"
    run_dir.mkdir()
    log = run_dir / rf.LOG_FILE
    log.write_text("")
    assert runs.run_state(run_dir) == rf.STARTING
    os.utime(log, (STALE, STALE))
    assert runs.run_state(run_dir) == rf.CRASHED


def test_a_launched_run_without_status_is_judged_by_its_launch_record_process(runs_dir):
    import socket

    run_dir = runs_dir / "slow-import"
    run_dir.mkdir()
    log = run_dir / rf.LOG_FILE
    log.write_text("")
    os.utime(log, (STALE, STALE))  # torch still importing on a busy host: nothing written for long
    me = psutil.Process()
    record = {"pid": me.pid, "pid_create_time": me.create_time(), "host": socket.gethostname()}
    (run_dir / rf.LAUNCH_FILE).write_text(json.dumps(record))
    assert runs.run_state(run_dir) == rf.STARTING  # its process lives
    os.utime(log)  # a fresh log does not save a launch whose process is gone
    (run_dir / rf.LAUNCH_FILE).write_text(json.dumps({**record, "pid": dead_pid()}))
    assert runs.run_state(run_dir) == rf.CRASHED
    (run_dir / rf.LAUNCH_FILE).write_text(json.dumps({**record, "pid_create_time": me.create_time() - 1000}))
    assert runs.run_state(run_dir) == rf.CRASHED  # a reused pid


def test_list_runs_reports_status_extras_and_alert_counts(runs_dir):
    run_dir = make_run(runs_dir, "a", state=rf.FINISHED, step=500, task="char_lm", max_steps=500, best_val_loss=1.9)
    alerts = [
        {"step": 1, "time": 1.0, "kind": "alert", "message": "m", "code": "x", "severity": "warning"},
        {"step": 2, "time": 2.0, "kind": "alert", "message": "m", "code": "y", "severity": "critical"},
        {"step": 3, "time": 3.0, "kind": "alert", "message": "m", "code": "y", "severity": "critical"},
        {"step": 3, "time": 3.0, "kind": "checkpoint", "message": "saved"},
    ]
    lines = [json.dumps(a) for a in alerts] + ['{"kind": "alert", "severity": "crit']  # torn last line
    (run_dir / rf.EVENTS_FILE).write_text("\n".join(lines))
    make_run(runs_dir, "b", updated=STALE, pid=dead_pid(), started=time.time(), parent="a")
    (runs_dir / "not-a-run").mkdir()

    infos = runs.list_runs(runs_dir)

    assert [i.run_id for i in infos] == ["b", "a"]  # newest first
    b, a = infos
    assert (a.task, a.state, a.step, a.max_steps, a.best_val_loss) == ("char_lm", rf.FINISHED, 500, 500, 1.9)
    assert a.alert_counts == {"info": 0, "warning": 1, "critical": 2}
    assert (b.state, b.parent, b.task, b.max_steps) == (rf.CRASHED, "a", "char_lm", 2000)  # from config.yaml
    assert b.alert_counts == {"info": 0, "warning": 0, "critical": 0}


def test_alert_counts_see_new_alerts_appended(runs_dir):
    run_dir = make_run(runs_dir, "a")
    events = run_dir / rf.EVENTS_FILE
    line = json.dumps({"step": 1, "time": 1.0, "kind": "alert", "message": "m", "severity": "info"}) + "\n"
    events.write_text(line)
    assert runs.alert_counts(run_dir)["info"] == 1
    with open(events, "a") as f:
        f.write(line)
    assert runs.alert_counts(run_dir)["info"] == 2


def test_list_runs_of_missing_directory_is_empty(tmp_path):
    assert runs.list_runs(tmp_path / "nothing") == []


def test_request_stop_writes_a_request_addressed_to_the_runs_process(runs_dir):
    run_dir = make_run(runs_dir, "live")
    request = runs.request_stop(runs_dir, "live")
    status = runs.read_status(run_dir)
    assert (run_dir / rf.CONTROL_DIR / rf.STOP_FILE).is_file()
    assert (request.pid, request.pid_create_time) == (status["pid"], status["pid_create_time"])
    assert stop_request.read(run_dir) == request


@pytest.mark.parametrize(
    ("status", "words"),
    [({"state": rf.FINISHED}, "is finished"), ({"updated": STALE, "pid": None}, "crashed")],
)
def test_request_stop_refuses_a_run_that_is_not_live(runs_dir, status, words):
    if status.get("pid", 0) is None:
        status["pid"] = dead_pid()
    run_dir = make_run(runs_dir, "done", **status)
    with pytest.raises(RunStateError, match=words):
        runs.request_stop(runs_dir, "done")
    assert not (run_dir / rf.CONTROL_DIR / rf.STOP_FILE).exists()
