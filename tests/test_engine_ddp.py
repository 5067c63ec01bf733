"""DDP under torchrun on 2 CPU processes (gloo): rank 0 alone writes the run, the stop file
stops both ranks at the same step with a checkpoint holding both ranks' streams, and a resume
under torchrun finishes the run with every step logged once."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from engine_tiny import DRIVER, ROOT, events, single_thread_env, tiny_cfg, train_losses, wait_until

from trainer import config as C
from trainer.rundir import run_format as rf
from trainer.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")


def torchrun(tmp_path, *argv, delay_s=0.0):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cmd = ["torchrun", "--standalone", "--nproc_per_node=2", str(driver), str(delay_s), *argv]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=single_thread_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_ddp_run_stops_on_the_stop_file_and_resumes_under_torchrun(tmp_path, runs_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text(C.to_yaml(tiny_cfg(log_interval=2)))
    run_dir = runs_dir / "ddp"
    proc = torchrun(
        tmp_path, "run", "--config", str(config), "--run-id", "ddp", "--runs-dir", str(runs_dir), delay_s=0.05
    )
    wait_until(lambda: len(train_losses(run_dir)) >= 3, timeout_s=120)
    (run_dir / rf.CONTROL_DIR / rf.STOP_FILE).write_text("")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    stop = events(run_dir, "stop")[-1]
    assert 0 < stop["step"] < 40 and "control/stop" in stop["message"]
    assert events(run_dir, "start")[0]["world_size"] == 2
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] == stop["step"] and len(ckpt["per_rank"]) == 2
    # Each rank draws its own batches: the two data positions differ.
    assert not ckpt["per_rank"][0]["train_gen"].equal(ckpt["per_rank"][1]["train_gen"])

    proc = torchrun(tmp_path, "resume", "ddp", "--runs-dir", str(runs_dir))
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    losses = train_losses(run_dir)
    assert sorted(losses) == list(range(2, 41, 2))
    assert all(isinstance(v, float) for v in losses.values())
    assert events(run_dir, "resume")[-1]["step"] == stop["step"]
    assert events(run_dir, "finish")[-1]["step"] == 40
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".jsonl")) == [
        "events.jsonl",
        "grads.jsonl",
        "metrics.jsonl",
        "samples.jsonl",
    ]
