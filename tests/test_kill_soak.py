"""kill -9 at random moments (inside a step, mid checkpoint write, mid metrics flush), resumed at once:
every step logged once, train/loss bit for bit as an uninterrupted run, every checkpoint loads.
The 20-kill soak on the default preset is benchmarks/kill_soak.py; this is its CI size."""

from __future__ import annotations

import importlib.util
import json
import sys

from engine_tiny import ROOT, TINY

from trainer import config as C

_spec = importlib.util.spec_from_file_location("kill_soak", ROOT / "benchmarks" / "kill_soak.py")
kill_soak = sys.modules["kill_soak"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_soak)


def test_a_run_killed_four_times_logs_every_step_once_and_the_same_losses(runs_dir):
    config = runs_dir.parent / "tiny.yaml"
    config.write_text(C.to_yaml(C.from_dict(C.apply_overrides(TINY, {"max_steps": 60, "device": "cpu"}))))
    moments = ["step", "checkpoint", "checkpointed", "flush"]
    result = kill_soak.soak(
        runs_dir, config, ["keep_checkpoints=2", "eval_interval=25"], 60, kills=4, seed=1, moments=moments
    )
    assert result.kills == 4, result
    assert set(result.moments) == set(kill_soak.MOMENTS), result.moments
    assert result.problems == []
    assert result.steps == 60 and result.checkpoints >= 3


def test_a_resume_cuts_a_torn_last_event_and_deletes_the_temp_files_a_kill_left(runs_dir):
    from app_fixtures import make_run

    from trainer.rundir import run_format as rf
    from trainer.rundir.writer import open_run

    make_run(runs_dir, "torn")
    run_dir = runs_dir / "torn"
    with open(run_dir / rf.EVENTS_FILE, "ab") as f:
        f.write(b'{"step":60,"time":1.0,"kind":"alert","mess')  # killed (or a full disk) mid-line
    leftovers = [run_dir / rf.CHECKPOINT_DIR / ".last.pt.4242.17.tmp", run_dir / ".status.json.4242.17.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    writer = open_run(runs_dir, "torn", resume_step=40)
    writer.event("resume", "resume at step 40", step=40)
    writer.finish()
    lines = (run_dir / rf.EVENTS_FILE).read_bytes().splitlines()
    assert json.loads(lines[-1])["kind"] == "resume"  # whole, not glued to the torn line
    assert not any(path.exists() for path in leftovers)
