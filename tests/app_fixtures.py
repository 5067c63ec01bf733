"""Fixture run directories for the dashboard tests, written with trainer.rundir.writer like a real run."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

from trainer import config as C
from trainer.rundir import run_format as rf
from trainer.rundir.writer import open_run

SHAKESPEARE_LINE = "ROMEO:\nBut soft, what light through yonder window breaks?"
ALERT = {
    "code": "loss_spike",
    "severity": "critical",
    "message": "train/loss jumped 8.1x above its running median",
    "evidence": {"loss": 12.5, "median": 1.54, "ratio": 8.1},
    "remedy": [{"set": {"lr": 0.0003}, "why": "a smaller step size stops the overshoot"}],
}


def fake_checkpoint(path: Path) -> Path:
    """A whole zip archive (what torch.save writes) that these tests never load: resume checks that a
    checkpoint is whole before choosing it, and loads it only in a real trainer."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"not loaded in these tests")
    return path


def make_run(
    runs_dir: Path,
    run_id: str,
    steps: int = 60,
    state: str | None = rf.FINISHED,
    parent: str | None = None,
    config: dict | None = None,
    alert: bool = False,
    samples: str = "text",
    checkpoint: bool = True,
):
    """A run with metrics every step, val/loss every 20, samples every 20, optional alert.

    state None leaves the writer open (a live run of this test process); the writer is returned
    so the test can finish it. Its status argv is not a trainer's, so no control ever signals it.
    """
    cfg = C.from_dict({"max_steps": 100, "log_interval": 1, "warmup_steps": 10, **(config or {})}).to_dict()
    run = open_run(runs_dir, run_id, config=cfg, parent=parent)
    for step in range(1, steps + 1):
        row = {
            rf.TRAIN_LOSS: 4.0 * math.exp(-step / 30) + 1.0,
            rf.LR: 1e-3,
            rf.GRAD_NORM: 0.5 + step / 100,
            rf.VARIANCE_RATIO: min(1.0, step / 50),
            rf.STEPS_PER_S: 10.0,
            rf.TOKENS_PER_S: 7680.0,
            rf.RSS_MB: 300.0,
            rf.CPU_PERCENT: 95.0,
        }
        if step % 20 == 0:
            row[rf.VAL_LOSS] = row[rf.TRAIN_LOSS] + 0.1
            if samples == "text":
                run.log_sample(step, text=f"step {step}: {SHAKESPEARE_LINE}")
            elif samples == "numeric":
                run.log_sample(step, pred=[0.1 * i for i in range(16)], target=[0.2 * i for i in range(16)])
        run.log(step, row)
    if alert:
        run.event("alert", ALERT["message"], step=steps, **{k: v for k, v in ALERT.items() if k != "message"})
    if checkpoint:
        fake_checkpoint(runs_dir / run_id / rf.CHECKPOINT_DIR / rf.CKPT_LAST)
    run.set_status(
        state=rf.RUNNING,
        step=steps,
        task=cfg["task"],
        max_steps=cfg["max_steps"],
        best_val_loss=1.2,
        argv=["my_own_script.py"],
    )
    run.flush()
    if state is None:
        return run
    run.finish(state)
    return run
