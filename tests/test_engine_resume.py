"""Stop (control/stop, SIGTERM, kill -9) then resume gives, step for step, the same train/loss
as an uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from engine_tiny import (
    events,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread)
    start_slow_run,
    tiny_cfg,
    train_losses,
    wait_until,
)

from trainer.rundir import run_format as rf
from trainer.training.engine import train


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    with single_thread():
        assert train(tiny_cfg(), runs, "ref") == rf.FINISHED
    losses = train_losses(runs / "ref")
    assert sorted(losses) == list(range(1, 41))
    return losses


class single_thread:
    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def resume_in_process(runs_dir, run_id):
    with single_thread():
        return train(
            tiny_cfg(), runs_dir, run_id, mode="resume", checkpoint=runs_dir / run_id / "checkpoints" / "last.pt"
        )


def started(run_dir, after_step=3):
    return lambda: (
        any(e["kind"] == "checkpoint" for e in events(run_dir))
        or ((run_dir / "metrics.jsonl").exists() and len(train_losses(run_dir)) >= after_step)
    )


def test_resume_after_stop_file_matches_uninterrupted(runs_dir, uninterrupted):
    proc = start_slow_run(tiny_cfg(), runs_dir, "stopped")
    run_dir = runs_dir / "stopped"
    wait_until(started(run_dir))
    (run_dir / "control" / "stop").write_text("")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    stop_step = events(run_dir, "stop")[-1]["step"]
    assert 0 < stop_step < 40
    assert not (run_dir / "control" / "stop").exists(), "the trainer that honoured the request must consume it"
    assert resume_in_process(runs_dir, "stopped") == rf.FINISHED
    assert train_losses(run_dir) == uninterrupted


def test_resume_after_sigterm_matches_uninterrupted(runs_dir, uninterrupted):
    proc = start_slow_run(tiny_cfg(), runs_dir, "termed")
    run_dir = runs_dir / "termed"
    wait_until(started(run_dir))
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    stop = events(run_dir, "stop")[-1]
    assert "SIGTERM" in stop["message"] and stop["step"] < 40
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert resume_in_process(runs_dir, "termed") == rf.FINISHED
    assert train_losses(run_dir) == uninterrupted


def test_resume_after_kill_matches_uninterrupted(runs_dir, uninterrupted):
    proc = start_slow_run(tiny_cfg(), runs_dir, "killed")
    run_dir = runs_dir / "killed"
    # Kill after the step-10 checkpoint, mid-way to the next one.
    wait_until(lambda: len(train_losses(run_dir)) >= 13, timeout_s=90)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert max(train_losses(run_dir)) > 10  # rows past the checkpoint exist and must go
    assert resume_in_process(runs_dir, "killed") == rf.FINISHED
    assert train_losses(run_dir) == uninterrupted
    resumes = events(run_dir, "resume")
    assert resumes and resumes[-1]["step"] % 10 == 0


def test_resume_passes_over_a_damaged_last_checkpoint_and_matches_uninterrupted(runs_dir, uninterrupted):
    """A last.pt cut short (a full disk, a kill during a copy) must not cost the run: resume takes
    the newest whole checkpoint, says which file it passed over, and never loads the damaged one."""
    from trainer import runs

    proc = start_slow_run(tiny_cfg(), runs_dir, "damaged")
    run_dir = runs_dir / "damaged"
    wait_until(lambda: any(e["kind"] == "checkpoint" and e["step"] >= 20 for e in events(run_dir)))
    (run_dir / "control" / "stop").write_text("")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    prepared = runs.prepare_resume(runs_dir, "damaged", [], environ={})
    assert prepared.checkpoint.name.startswith("step_") and prepared.skipped[0][0] == "last.pt"
    assert "not a whole checkpoint" in prepared.skipped[0][1]
    with single_thread():
        assert train(tiny_cfg(), runs_dir, "damaged", mode="resume", checkpoint=prepared.checkpoint) == rf.FINISHED
    assert train_losses(run_dir) == uninterrupted
