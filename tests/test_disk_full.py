"""A full disk during a checkpoint write or a metrics flush: the run is marked failed with a message
that says so and how to resume, the previous checkpoint stays whole, nothing torn is left, and a
resume works once there is space. ENOSPC injected at the write calls (trainer.rundir.faults), and
once for real on a small tmpfs (root only)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from engine_tiny import (
    events,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread)
    start_slow_run,
    tiny_cfg,
    train_losses,
    wait_until,
)

from trainer.rundir import faults
from trainer.rundir import run_format as rf
from trainer.rundir.status import read_status
from trainer.runs import prepare_resume
from trainer.runs.resume import checkpoint_damage
from trainer.training.checkpoint import load_checkpoint
from trainer.training.engine import train


@pytest.fixture
def fault(monkeypatch):
    """fault("checkpoint", 2): the 2nd write at that point fails with ENOSPC (0: none does)."""

    def plan(point: str, hit: int) -> None:
        monkeypatch.setattr(faults, "_plan", {point: ("enospc", hit)})
        monkeypatch.setattr(faults, "_hits", faults.Counter())

    return plan


def assert_failed_for_a_full_disk(run_dir, file_name: str) -> dict:
    status = read_status(run_dir)
    assert status["state"] == rf.FAILED
    message = status["message"]
    assert message.startswith("the disk is full") and file_name in message, message
    assert f"python -m trainer resume {run_dir.name}" in message
    error = events(run_dir, "error")[-1]
    assert "No space left on device" in error["error"]
    leftovers = [p.name for d in (run_dir, run_dir / rf.CHECKPOINT_DIR) for p in d.iterdir() if p.suffix == ".tmp"]
    assert leftovers == []
    assert not (run_dir / rf.RESERVE_FILE).exists(), "the reserve is freed for the failure's own writes"
    return status


def resume_to_the_end(runs_dir, run_id: str) -> None:
    prepared = prepare_resume(runs_dir, run_id, [], environ={})
    assert prepared.skipped == ()
    state = train(prepared.config, runs_dir, run_id, mode="resume", checkpoint=prepared.checkpoint)
    assert state == rf.FINISHED
    assert sorted(train_losses(runs_dir / run_id)) == list(range(1, 41))  # every step once


def test_a_full_disk_at_a_checkpoint_fails_the_run_and_keeps_the_previous_checkpoint(runs_dir, fault):
    fault("checkpoint", 3)  # step 10 writes best.pt then last.pt; the third write fails
    assert train(tiny_cfg(), runs_dir, "ckpt") == rf.FAILED
    run_dir = runs_dir / "ckpt"
    assert_failed_for_a_full_disk(run_dir, "checkpoints/")
    written = [e for e in events(run_dir, "checkpoint") if rf.CKPT_LAST in e["files"]]
    last = run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST
    assert checkpoint_damage(last) is None and load_checkpoint(last)["step"] == written[-1]["step"] == 10
    fault("checkpoint", 0)  # space again
    resume_to_the_end(runs_dir, "ckpt")


def test_a_full_disk_at_a_metrics_flush_fails_the_run_without_a_torn_line(runs_dir, fault):
    fault("flush", 4)
    assert train(tiny_cfg(), runs_dir, "flush") == rf.FAILED
    run_dir = runs_dir / "flush"
    assert_failed_for_a_full_disk(run_dir, rf.METRICS_FILE)
    data = (run_dir / rf.METRICS_FILE).read_bytes()
    assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())
    fault("flush", 0)
    resume_to_the_end(runs_dir, "flush")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MB tmpfs of our own (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the injected cases cover it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_fails_the_run_and_resume_works_once_there_is_space(small_tmpfs):
    runs_dir = small_tmpfs / "runs"
    runs_dir.mkdir()
    proc = start_slow_run(tiny_cfg(keep_checkpoints=0, eval_interval=1000), runs_dir, "full", delay_s=0.1)
    run_dir = runs_dir / "full"
    try:
        wait_until(lambda: any(e["kind"] == "checkpoint" for e in events(run_dir)), timeout_s=90)
        ballast = small_tmpfs / "ballast"
        with open(ballast, "wb", buffering=0) as f:  # fill the disk to the last byte
            for size in (1 << 16, 1 << 10, 1):
                try:
                    while True:
                        f.write(bytes(size))
                except OSError:
                    pass
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out
    status = read_status(run_dir)
    assert status["state"] == rf.FAILED and status["message"].startswith("the disk is full"), status
    assert status["step"] < 40
    last = run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST
    assert checkpoint_damage(last) is None and load_checkpoint(last)["step"] == 10
    os.unlink(ballast)
    resume_to_the_end(runs_dir, "full")
