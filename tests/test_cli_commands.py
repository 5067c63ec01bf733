"""The CLI: help on every command, and bad input -> exit 2 with one clear "error: ..." line."""

import json
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from app_fixtures import fake_checkpoint

from trainer import cli
from trainer import config as C
from trainer.rundir import run_format as rf
from trainer.runs.new_run import ROOT

COMMANDS = ("run", "resume", "fork", "stop", "list", "diagnose", "import")


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_run(runs_dir, run_id, state=rf.STOPPED, updated=None, pid=None, create_time=None, sets=(), argv=None):
    run_dir = runs_dir / run_id
    (run_dir / rf.CHECKPOINT_DIR).mkdir(parents=True)
    fake_checkpoint(run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST)
    (run_dir / rf.CONFIG_FILE).write_text(yaml.safe_dump(C.resolve(None, list(sets)).to_dict()))
    me = psutil.Process()
    status = {
        "run_id": run_id,
        "state": state,
        "step": 42,
        "pid": me.pid if pid is None else pid,
        "pid_create_time": me.create_time() if create_time is None else create_time,
        "argv": ["/usr/bin/not-a-trainer"] if argv is None else argv,
        "started": time.time(),
        "updated": time.time() if updated is None else updated,
        "task": "char_lm",
        "max_steps": 2000,
        "best_val_loss": 2.5,
        "parent": None,
    }
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    return run_dir


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_commands_have_help(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0
        assert f"usage: python -m trainer {command}" in out
        description = out.split("\n\n")[1]
        assert len(description.split()) >= 6, f"{command} --help has no description"


def test_run_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for key, _, _ in C.describe():
        assert f"  {key} = " in out


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0 and "resume" in result.stdout


@pytest.mark.parametrize(
    ("argv", "first_words"),
    [
        (["run", "--run-id", "../x"], "error: invalid run id '../x'"),
        (["run", "--set", "no_such_key=1"], "error: unknown config key no_such_key"),
        (["run", "--set", "lr=0"], "error: lr: 0"),
        (["run", "--set", "batch_size=0"], "error: batch_size: 0 must be >= 1"),
        (["run", "--set", "lr"], "error: --set 'lr': expected key=value"),
        (["run", "--config", "missing.yaml"], "error: config file missing.yaml not found"),
        (["resume", "ghost"], "error: no run 'ghost'"),
        (["stop", "ghost"], "error: no run 'ghost'"),
        (["fork", "ghost", "--run-id", "new"], "error: no run 'ghost'"),
        (["diagnose", "ghost"], "error: no run 'ghost'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_error(capsys, runs_dir, argv, first_words):
    code, out, err = run_cli(capsys, *argv, "--runs-dir", runs_dir)
    assert code == 2
    assert err.startswith(first_words), err
    assert "Traceback" not in err and err.count("\n") == 1
    assert list(runs_dir.iterdir()) == []  # nothing written


def test_fork_to_an_existing_id_is_refused(capsys, runs_dir):
    make_run(runs_dir, "a")
    make_run(runs_dir, "b")
    code, _, err = run_cli(capsys, "fork", "a", "--from", "last", "--run-id", "b", "--runs-dir", runs_dir)
    assert code == 2 and err.startswith("error: run 'b' already exists")


def test_run_to_an_existing_id_is_refused_before_training(capsys, runs_dir):
    make_run(runs_dir, "a")
    code, _, err = run_cli(capsys, "run", "--run-id", "a", "--runs-dir", runs_dir)
    assert code == 2 and err.startswith("error: run 'a' already exists")


def test_shape_change_on_resume_is_refused(capsys, runs_dir):
    make_run(runs_dir, "a")
    code, _, err = run_cli(capsys, "resume", "a", "--set", "model.n_layer=8", "--runs-dir", runs_dir)
    assert code == 2 and err.startswith("error: model.n_layer: cannot change from 4 to 8 on resume")


def test_resume_of_a_running_run_is_refused(capsys, runs_dir):
    make_run(runs_dir, "a", state=rf.RUNNING)
    code, _, err = run_cli(capsys, "resume", "a", "--runs-dir", runs_dir)
    assert code == 2 and err.startswith("error: run 'a' is running")


def test_stop_of_a_finished_run_is_refused(capsys, runs_dir):
    make_run(runs_dir, "a", state=rf.FINISHED)
    code, _, err = run_cli(capsys, "stop", "a", "--runs-dir", runs_dir)
    assert code == 2 and err.startswith("error: run 'a' is finished")


def test_stop_without_wait_writes_the_stop_file(capsys, runs_dir):
    run_dir = make_run(runs_dir, "a", state=rf.RUNNING)
    code, out, _ = run_cli(capsys, "stop", "a", "--runs-dir", runs_dir)
    assert code == 0 and out.startswith("stop requested")
    assert (run_dir / rf.CONTROL_DIR / rf.STOP_FILE).is_file()


def test_list_shows_crashed_for_a_stale_heartbeat_with_a_dead_pid(capsys, runs_dir):
    stale = time.time() - rf.STALE_AFTER_SECONDS - 60
    make_run(runs_dir, "dead", state=rf.RUNNING, updated=stale, pid=dead_pid())
    make_run(runs_dir, "alive", state=rf.RUNNING, updated=stale)  # this process: alive
    code, out, _ = run_cli(capsys, "list", "--runs-dir", runs_dir)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["dead"][:5] == ["dead", "char_lm", "crashed", "42/2000", "2.5000"]
    assert rows["alive"][2] == "running"


def test_list_json_has_one_object_per_run(capsys, runs_dir):
    make_run(runs_dir, "a", state=rf.FINISHED)
    code, out, _ = run_cli(capsys, "list", "--json", "--runs-dir", runs_dir)
    [row] = json.loads(out)
    assert code == 0 and (row["run_id"], row["state"], row["best_val_loss"]) == ("a", "finished", 2.5)
    assert row["alert_counts"] == {"info": 0, "warning": 0, "critical": 0}


def test_list_of_an_empty_runs_dir_says_how_to_start(capsys, runs_dir):
    code, out, _ = run_cli(capsys, "list", "--runs-dir", runs_dir)
    assert code == 0 and "python -m trainer run" in out


def test_runs_dir_defaults_to_the_environment(capsys, runs_dir, monkeypatch):
    make_run(runs_dir, "from-env", state=rf.FINISHED)
    monkeypatch.setenv("TRAINER_RUNS_DIR", str(runs_dir))
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "from-env" in out


def test_stop_wait_gives_up_without_signalling_an_unverified_process(capsys, runs_dir):
    make_run(runs_dir, "a", state=rf.RUNNING)  # this test process, recorded with another program's argv
    code, _, err = run_cli(capsys, "stop", "a", "--wait", "--grace", "0.2", "--runs-dir", runs_dir)
    assert code == 1 and err.startswith("run a is still running after 0.2 s")


def write_metrics_with_a_nan(run_dir):
    rows = [{"step": s, "time": 1000.0 + s, "train/loss": 4.0 - 0.05 * s, "lr": 1e-3} for s in range(1, 30)]
    rows.append({"step": 30, "time": 1030.0, "train/loss": None, "lr": 1e-3})  # NaN is written as null
    (run_dir / rf.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_diagnose_prints_the_doctors_findings(capsys, runs_dir):
    run_dir = make_run(runs_dir, "nan", state=rf.FAILED)
    write_metrics_with_a_nan(run_dir)
    code, out, _ = run_cli(capsys, "diagnose", run_dir, "--json")
    result = json.loads(out)
    assert code == 0 and "non_finite" in [a["code"] for a in result["alerts"]]
    code, out, _ = run_cli(capsys, "diagnose", "nan", "--runs-dir", runs_dir)  # a run id works too
    assert code == 0 and out.startswith("# ") and "non_finite" in out


def test_resume_says_which_damaged_checkpoint_it_passed_over(capsys, runs_dir, monkeypatch):
    from trainer.runs import process

    run_dir = make_run(runs_dir, "a")
    fake_checkpoint(run_dir / rf.CHECKPOINT_DIR / "step_00000040.pt")
    (run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST).write_bytes(b"PK\x03\x04 cut short")
    launched = []
    monkeypatch.setattr(process, "check_data", lambda cfg: None)
    monkeypatch.setattr(process, "launch", lambda argv, *a, **k: launched.append(argv) or 4242)
    code, out, err = run_cli(capsys, "resume", "a", "--background", "--runs-dir", runs_dir)
    assert code == 0 and launched
    assert "checkpoint last.pt is damaged (not a whole checkpoint" in err
    assert "resuming from checkpoints/step_00000040.pt, the newest whole checkpoint" in out
