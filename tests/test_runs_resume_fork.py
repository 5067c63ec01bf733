"""Resume and fork preparation: which runs, which checkpoint, which config changes are allowed."""

import json
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from app_fixtures import fake_checkpoint

from trainer import config as C
from trainer import runs
from trainer.errors import CheckpointError, ConfigError, RunExists, RunIdError, RunNotFound, RunStateError
from trainer.rundir import run_format as rf


def make_stopped_run(runs_dir, run_id, sets=(), checkpoints=("last.pt",), state=rf.STOPPED):
    run_dir = runs_dir / run_id
    (run_dir / rf.CHECKPOINT_DIR).mkdir(parents=True)
    (run_dir / rf.CONFIG_FILE).write_text(yaml.safe_dump(C.resolve(None, list(sets)).to_dict()))
    for name in checkpoints:
        fake_checkpoint(run_dir / rf.CHECKPOINT_DIR / name)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    status = {"run_id": run_id, "state": state, "step": 100, "pid": child.pid, "pid_create_time": 0.0}
    status["updated"] = time.time()
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    return run_dir


def test_resume_returns_last_checkpoint_and_the_changes(runs_dir):
    run_dir = make_stopped_run(runs_dir, "a")
    cfg, checkpoint, changes, _ = runs.prepare_resume(runs_dir, "a", ["max_steps=4000", "lr=3e-4"], environ={})
    assert checkpoint == run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST
    assert (cfg.max_steps, cfg.lr) == (4000, 3e-4)
    assert changes == {"lr": (1e-3, 3e-4), "max_steps": (2000, 4000)}


def test_resume_without_changes_has_no_changes(runs_dir):
    make_stopped_run(runs_dir, "a", sets=["lr=5e-4"])
    cfg, _, changes, _ = runs.prepare_resume(runs_dir, "a", [], environ={})
    assert cfg.lr == 5e-4 and changes == {}


def test_resume_applies_environment_overrides(runs_dir):
    make_stopped_run(runs_dir, "a")
    _, _, changes, _ = runs.prepare_resume(runs_dir, "a", [], environ={"BATCH_SIZE": "32"})
    assert changes == {"batch_size": (12, 32)}


@pytest.mark.parametrize("key_value", ["model.n_layer=2", "model.n_embd=64", "task=regression", "block_size=32"])
def test_resume_refuses_a_shape_change_naming_the_key(runs_dir, key_value):
    make_stopped_run(runs_dir, "a")
    key = key_value.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}: cannot change .* on resume"):
        runs.prepare_resume(runs_dir, "a", [key_value], environ={})


def test_resume_refuses_a_live_run(runs_dir):
    run_dir = make_stopped_run(runs_dir, "a", state=rf.RUNNING)
    me = psutil.Process()
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status.update(pid=me.pid, pid_create_time=me.create_time())
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    with pytest.raises(RunStateError, match="is running .* stop it first"):
        runs.prepare_resume(runs_dir, "a", [], environ={})


def test_resume_of_a_crashed_run_is_allowed(runs_dir):
    run_dir = make_stopped_run(runs_dir, "a", state=rf.RUNNING)
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status["updated"] = time.time() - 3600
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    assert runs.prepare_resume(runs_dir, "a", [], environ={}).checkpoint.name == rf.CKPT_LAST


def test_resume_without_checkpoint_says_what_to_do(runs_dir):
    make_stopped_run(runs_dir, "a", checkpoints=())
    with pytest.raises(
        CheckpointError, match="no checkpoint to resume from .* `python -m trainer run --config .*config.yaml`"
    ):
        runs.prepare_resume(runs_dir, "a", [], environ={})


def test_resume_of_missing_or_unsafe_run_is_refused(runs_dir):
    with pytest.raises(RunNotFound, match="no run 'ghost'"):
        runs.prepare_resume(runs_dir, "ghost", [])
    with pytest.raises(RunIdError):
        runs.prepare_resume(runs_dir, "../a", [])


def test_resume_refuses_invalid_new_values(runs_dir):
    make_stopped_run(runs_dir, "a")
    with pytest.raises(ConfigError, match="^lr: 0.0 must be > 0"):
        runs.prepare_resume(runs_dir, "a", ["lr=0"], environ={})


@pytest.mark.parametrize(
    ("from_", "name"),
    [("last", "last.pt"), ("best", "best.pt"), ("500", "step_00000500.pt"), (500, "step_00000500.pt")],
)
def test_fork_picks_the_requested_checkpoint(runs_dir, from_, name):
    make_stopped_run(runs_dir, "a", checkpoints=("last.pt", "best.pt", "step_00000500.pt"))
    cfg, checkpoint, changes, _ = runs.prepare_fork(runs_dir, "a", from_, "b", ["lr=3e-4"], environ={})
    assert checkpoint.name == name and cfg.lr == 3e-4 and changes == {"lr": (1e-3, 3e-4)}
    assert not (runs_dir / "b").exists()  # preparing writes nothing


def test_fork_of_a_missing_step_lists_what_exists(runs_dir):
    make_stopped_run(runs_dir, "a", checkpoints=("last.pt", "step_00000250.pt", "step_00000500.pt"))
    with pytest.raises(CheckpointError, match="no checkpoint '300' .* this run has: last, 250, 500"):
        runs.prepare_fork(runs_dir, "a", "300", "b", [])
    with pytest.raises(CheckpointError, match="use best, last or a step number"):
        runs.prepare_fork(runs_dir, "a", "latest", "b", [])


def test_fork_refuses_existing_or_unsafe_new_id(runs_dir):
    make_stopped_run(runs_dir, "a")
    make_stopped_run(runs_dir, "b")
    with pytest.raises(RunExists, match="run 'b' already exists"):
        runs.prepare_fork(runs_dir, "a", "last", "b", [])
    with pytest.raises(RunExists):
        runs.prepare_fork(runs_dir, "a", "last", "a", [])
    with pytest.raises(RunIdError, match="invalid run id '../c'"):
        runs.prepare_fork(runs_dir, "a", "last", "../c", [])


def test_fork_into_a_directory_holding_only_the_launch_log_is_allowed(runs_dir):
    make_stopped_run(runs_dir, "a")
    (runs_dir / "b").mkdir()
    (runs_dir / "b" / rf.LOG_FILE).write_text("")
    assert runs.prepare_fork(runs_dir, "a", "last", "b", [], environ={}).checkpoint.name == rf.CKPT_LAST


def test_fork_refuses_a_shape_change(runs_dir):
    make_stopped_run(runs_dir, "a")
    with pytest.raises(ConfigError, match="^model.n_head: cannot change from 4 to 2 on fork"):
        runs.prepare_fork(runs_dir, "a", "last", "b", ["model.n_head=2"], environ={})


def test_torchrun_ranks_above_zero_skip_the_exclusive_checks(runs_dir):
    # Rank 0 has already started writing: a live status and the fork's directory exist.
    run_dir = make_stopped_run(runs_dir, "a", state=rf.RUNNING)
    me = psutil.Process()
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status.update(pid=me.pid, pid_create_time=me.create_time())
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    make_stopped_run(runs_dir, "b")
    assert not runs.is_main_rank({"WORLD_SIZE": "2", "RANK": "1"})
    assert runs.is_main_rank({"WORLD_SIZE": "2", "RANK": "0"}) and runs.is_main_rank({})
    assert runs.prepare_resume(runs_dir, "a", [], environ={}, check_exclusive=False).checkpoint.is_file()
    assert runs.prepare_fork(runs_dir, "a", "last", "b", [], environ={}, check_exclusive=False).changes == {}


def test_resume_accepts_a_start_claimed_for_this_very_process_only(runs_dir):
    # process.launch marks a background resume "starting" under the child's pid; the child goes on.
    run_dir = make_stopped_run(runs_dir, "a", state=rf.STARTING)
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status.update(pid=psutil.Process().pid, pid_create_time=psutil.Process().create_time())
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    assert runs.prepare_resume(runs_dir, "a", [], environ={}).changes == {}
    rival = psutil.Process().parent()  # a start claimed for another live process: a rival
    status.update(pid=rival.pid, pid_create_time=rival.create_time())
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    with pytest.raises(RunStateError, match="is starting"):
        runs.prepare_resume(runs_dir, "a", [], environ={})


def test_resume_takes_the_newest_whole_checkpoint_and_refuses_when_none_is(runs_dir):
    run_dir = make_stopped_run(
        runs_dir, "a", checkpoints=("last.pt", "step_00000040.pt", "step_00000020.pt", "best.pt")
    )
    ckpts = run_dir / rf.CHECKPOINT_DIR
    (ckpts / "last.pt").write_bytes((ckpts / "last.pt").read_bytes()[:-30])  # cut short
    prepared = runs.prepare_resume(runs_dir, "a", [], environ={})
    assert prepared.checkpoint.name == "step_00000040.pt" and [n for n, _ in prepared.skipped] == ["last.pt"]
    for name in ("step_00000040.pt", "step_00000020.pt", "best.pt"):
        (ckpts / name).write_bytes(b"\0" * 64)  # not an archive at all
    with pytest.raises(CheckpointError, match="no whole checkpoint to resume from .*last.pt: .*best.pt: "):
        runs.prepare_resume(runs_dir, "a", [], environ={})
