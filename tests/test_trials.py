"""Remedy trials: N remedies + control launched as forks or new runs with the same steps, recorded as
a group, and judged by diagnosing each trial run; bad input is one clear error line."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from app_fixtures import fake_checkpoint

from trainer import cli
from trainer import config as C
from trainer.doctor import diagnose as real_diagnose
from trainer.errors import RunNotFound, RunStateError
from trainer.rundir import run_format as rf
from trainer.rundir.writer import open_run
from trainer.runs import process, trials

SMALL = ["max_steps=60", "warmup_steps=5", "model.n_layer=1", "model.n_embd=32", "block_size=16", "eval_interval=20"]
REMEDIES = [
    {"kind": "config", "start": "fork", "set": {"lr": 0.0005}, "why": "lr 0.001 -> 0.0005"},
    {"kind": "code", "set": {}, "why": "look in forward()"},
    {"kind": "config", "start": "new", "set": {"weight_decay": 0.01}, "why": "decay removes 3% per step"},
]
ALERT = {"code": "token_collapse", "severity": "critical", "step": 40, "message": "m", "evidence": {}}


def parent_run(runs_dir, run_id="sick", remedy=REMEDIES):
    """A stopped run of ours (config, best checkpoint at step 40) whose diagnosis has one alert."""
    run_dir = runs_dir / run_id
    (run_dir / rf.CHECKPOINT_DIR).mkdir(parents=True)
    (run_dir / rf.CONFIG_FILE).write_text(yaml.safe_dump(C.resolve(None, SMALL).to_dict()))
    fake_checkpoint(run_dir / rf.CHECKPOINT_DIR / rf.CKPT_BEST)
    event = {"step": 40, "time": 0, "kind": "checkpoint", "message": "wrote best.pt", "files": ["best.pt"]}
    (run_dir / rf.EVENTS_FILE).write_text(json.dumps(event) + "\n")
    (run_dir / rf.STATUS_FILE).write_text(json.dumps({"run_id": run_id, "state": rf.STOPPED, "step": 60}))
    return run_dir, {**ALERT, "remedy": remedy}


@pytest.fixture
def launched(monkeypatch):
    calls = []

    def fake_launch(argv, runs_dir, run_id, threads=None):
        calls.append([str(a) for a in argv])
        (runs_dir / run_id).mkdir()
        return 4242

    monkeypatch.setattr(process, "launch", fake_launch)
    return calls


@pytest.fixture
def parent(runs_dir, monkeypatch):
    run_dir, alert = parent_run(runs_dir)

    def diagnose(path):  # the parent's alert as given; every other run diagnosed for real
        return {"alerts": [alert]} if path == run_dir else real_diagnose(path)

    monkeypatch.setattr(trials, "diagnose", diagnose)
    return run_dir


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_trials_launch_each_config_remedy_and_a_control_per_start_with_the_same_steps(runs_dir, parent, launched):
    group = trials.start_trials(runs_dir, "sick", steps=30)
    assert [(t.role, t.start, t.sets) for t in group.trials] == [
        ("control", "fork", {}),
        ("control", "new", {}),
        ("remedy", "fork", {"lr": 0.0005}),
        ("remedy", "new", {"weight_decay": 0.01}),  # the code change is not a run
    ]
    forks = [a for a in launched if a[0] == "fork"]
    news = [a for a in launched if a[0] == "run"]
    assert len(forks) == 2 and len(news) == 2
    for argv in forks:  # from the parent's best checkpoint (step 40), 30 steps on
        assert argv[1:4] == ["sick", "--from", "best"] and "max_steps=70" in argv
    for argv in news:  # from the parent's own config, 30 steps from scratch (same seed: its config's)
        assert _value(argv, "--config").endswith("sick/config.yaml") and "max_steps=30" in argv
    assert "lr=0.0005" in forks[1] and "weight_decay=0.01" in news[1]
    for trial in group.trials:
        record = json.loads((runs_dir / trial.run_id / rf.TRIAL_FILE).read_text())
        assert (record["group"], record["parent"], record["code"]) == (group.name, "sick", "token_collapse")
        assert (record["role"], record["start"], record["set"]) == (trial.role, trial.start, trial.sets)
    assert list(trials.groups(runs_dir, "sick")) == [group.name]


def test_a_trial_directory_is_still_free_for_its_trainer(runs_dir):
    run_dir = runs_dir / "t"
    run_dir.mkdir()
    (run_dir / rf.LOG_FILE).write_text("")
    (run_dir / rf.TRIAL_FILE).write_text("{}")
    assert rf.holds_only_launch_files(run_dir)


def _trial_run(runs_dir, run_id, group, role, start, sets, nan_from=None, loss=2.0):
    """A finished trial run: train/loss at `loss` (NaN from step nan_from: non_finite fires)."""
    run = open_run(runs_dir, run_id, config=C.resolve(None, SMALL).to_dict())
    for step in range(1, 31):
        value = math.nan if nan_from and step >= nan_from else loss
        run.log(step, {rf.TRAIN_LOSS: value, rf.LR: 1e-3})
    run.finish(rf.FINISHED)
    record = {"group": group, "parent": "p", "code": "non_finite", "role": role, "start": start, "set": sets}
    (runs_dir / run_id / rf.TRIAL_FILE).write_text(json.dumps(record))


def test_the_report_diagnoses_each_trial_against_its_control(runs_dir):
    _trial_run(runs_dir, "g-control", "g", "control", "fork", {}, nan_from=20)
    _trial_run(runs_dir, "g-r1", "g", "remedy", "fork", {"lr": 0.0005})
    _trial_run(runs_dir, "g-r2", "g", "remedy", "fork", {"grad_clip": 1.0}, nan_from=25)
    _trial_run(runs_dir, "g-r3", "g", "remedy", "fork", {"batch_size": 48}, loss=3.0)
    rows = {r.run_id: r for r in trials.report(runs_dir, "g")}
    assert list(rows)[0] == "g-control" and rows["g-control"].fires
    assert rows["g-control"].verdict == "fails as the parent did"
    assert (rows["g-r1"].fires, rows["g-r1"].verdict) == (False, "fixed")
    assert (rows["g-r2"].fires, rows["g-r2"].verdict) == (True, "still fails")
    assert rows["g-r3"].verdict == "fixed, but train loss worse than the control"
    assert rows["g-r1"].change == "lr=0.0005" and rows["g-r1"].train_loss == 2.0
    table = trials.format_report("g", list(rows.values()))
    assert "g-r2" in table and "still fails" in table
    assert trials.latest_group(runs_dir, "p") == "g"


def test_bad_input_is_one_clear_error(runs_dir, parent, launched):
    with pytest.raises(RunNotFound, match="no run 'ghost'"):
        trials.start_trials(runs_dir, "ghost")
    quiet_dir, _ = parent_run(runs_dir, "quiet")
    with pytest.raises(trials.NothingToTry, match="no warning or critical alert: there is nothing to remedy"):
        trials.start_trials(runs_dir, "quiet")  # really diagnosed: it has no metrics, so no alert
    group = trials.start_trials(runs_dir, "sick", steps=10)
    for trial in group.trials:  # they ran and finished
        (runs_dir / trial.run_id / rf.STATUS_FILE).write_text(json.dumps({"state": rf.FINISHED}))
    with pytest.raises(RunStateError, match=r"were tried already .* --report`, or add --again"):
        trials.start_trials(runs_dir, "sick")
    with pytest.raises(trials.NothingToTry, match="is itself a trial of 'sick'"):
        trials.start_trials(runs_dir, group.trials[0].run_id)
    assert trials.start_trials(runs_dir, "sick", steps=10, again=True).name == "sick-try2"


def test_the_cli_prints_one_error_line(runs_dir, capsys):
    assert cli.main(["try-remedies", "ghost", "--runs-dir", str(runs_dir)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no run 'ghost'")
    parent_run(runs_dir, "calm")
    assert cli.main(["try-remedies", "calm", "--report", "--runs-dir", str(runs_dir)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: run 'calm' has no remedy trials yet")


def test_only_code_remedies_cannot_be_tried(runs_dir, monkeypatch):
    run_dir, alert = parent_run(runs_dir, "dead", remedy=[REMEDIES[1]])
    monkeypatch.setattr(trials, "diagnose", lambda path: {"alerts": [alert]})
    with pytest.raises(trials.NothingToTry, match="not config changes, so no run can try them .*look in forward"):
        trials.start_trials(runs_dir, "dead")


def test_a_trial_still_importing_on_a_loaded_machine_is_starting_not_crashed(runs_dir):
    """Under load a trainer can take longer than a heartbeat to write its first status.json; while
    the process its launcher started lives, the trial is starting (wait() and the report wait)."""
    import os
    import subprocess
    import sys

    import psutil

    run_dir = runs_dir / "slow"
    run_dir.mkdir()
    (run_dir / rf.LOG_FILE).write_text("")
    os.utime(run_dir / rf.LOG_FILE, (0, 0))  # an old train.log: run_state alone says crashed
    me = psutil.Process()
    assert trials._state(run_dir, me.pid, me.create_time()) == rf.STARTING
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert trials._state(run_dir, gone.pid, None) == rf.CRASHED
    assert trials._state(run_dir, me.pid, me.create_time() - 5) == rf.CRASHED  # a reused pid is not ours


def test_a_fork_that_fails_in_its_first_rows_is_judged_as_its_parent_continued(runs_dir):
    """A spike right after a fork has no history in the fork's own files to be judged against (the
    detector needs 16 rows): diagnosed alone it passes; continued from the parent, it fires."""
    from trainer.doctor import continued, diagnose

    cfg = C.resolve(None, [*SMALL, "schedule=constant", "warmup_steps=0", "max_steps=100"]).to_dict()
    parent = open_run(runs_dir, "p", config=cfg)
    for step in range(1, 61):
        parent.log(step, {rf.TRAIN_LOSS: 2.5 + 0.01 * math.sin(step), rf.LR: 1e-3})
    parent.finish(rf.FINISHED)
    fork = open_run(runs_dir, "p-fork", config=cfg)
    for step in range(41, 61):  # forked at step 40: the loss jumps at once
        fork.log(step, {rf.TRAIN_LOSS: 3.6 + 0.01 * math.sin(step), rf.LR: 1e-3})
    fork.finish(rf.FINISHED)
    assert not [a for a in diagnose(runs_dir / "p-fork")["alerts"] if a["code"] == "loss_spike"]
    spikes = [a for a in continued(runs_dir / "p", runs_dir / "p-fork", 40) if a["code"] == "loss_spike"]
    assert spikes and spikes[0]["step"] == 41
    record = {"code": "loss_spike", "parent": "p", "start": "fork", "from_step": 40}
    assert trials._fires(runs_dir, runs_dir / "p-fork", record)


def test_a_scripts_run_cannot_be_tried_and_says_where_the_change_goes(runs_dir, monkeypatch):
    run_dir, alert = parent_run(runs_dir, "script")
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    (run_dir / rf.STATUS_FILE).write_text(json.dumps({**status, rf.STATUS_WRITER: rf.WRITER_API}))
    monkeypatch.setattr(trials, "diagnose", lambda path: {"alerts": [alert]})
    with pytest.raises(trials.NothingToTry, match="written by its own script .* make the change .* in that script"):
        trials.start_trials(runs_dir, "script")
