"""The Hugging Face and Lightning callbacks under torchrun on 2 CPU processes (gloo): each library
calls the callback on every rank, yet one run directory is written (by rank 0), and the dashboard's
Stop, seen on rank 0 only, ends both ranks after the same step, so neither waits for the other.
Before, every rank opened the run, and the second was refused (RunBusy): the job failed at start."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from ddp_callbacks_driver import MAX_STEPS, STOP_AT
from engine_tiny import ROOT, single_thread_env

from trainer.rundir import run_format as rf
from trainer.rundir.status import read_status

pytest.importorskip("transformers")
pytest.importorskip("lightning.pytorch")
pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")


def test_callbacks_under_torchrun_write_one_run_and_a_stop_on_rank_0_stops_every_rank(runs_dir):
    driver = ROOT / "tests" / "ddp_callbacks_driver.py"
    cmd = ["torchrun", "--standalone", "--nproc_per_node=2", str(driver), str(runs_dir)]
    done = subprocess.run(cmd, cwd=ROOT, env=single_thread_env(), capture_output=True, text=True, timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    ended = {(rank, lib): int(step) for rank, lib, step in re.findall(r"rank (\d) (\w+) ended at (\d+)", out)}
    assert sorted(p.name for p in runs_dir.iterdir()) == ["hf-ddp", "lightning-ddp"]  # one run each
    for lib, run_id in (("hf", "hf-ddp"), ("lightning", "lightning-ddp")):
        assert ended[("0", lib)] == ended[("1", lib)], ended  # both ranks stopped after the same step
        assert STOP_AT <= ended[("0", lib)] < MAX_STEPS, ended
        status = read_status(runs_dir / run_id)
        assert status["state"] == rf.STOPPED, status
        rows = [json.loads(line) for line in (runs_dir / run_id / rf.METRICS_FILE).read_text().splitlines()]
        steps = [r["step"] for r in rows if rf.TRAIN_LOSS in r]
        assert steps and steps == sorted(set(steps)), steps  # one writer: each step once, in order
        probes = (runs_dir / run_id / rf.GRADS_FILE).read_text().splitlines()  # run.watch on rank 0's model
        assert probes and all(json.loads(p)["norms"] for p in probes)
