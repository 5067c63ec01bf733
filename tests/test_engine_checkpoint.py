"""Checkpoints: atomic writes, keep-N, best, early stopping, and never saving non-finite weights."""

from __future__ import annotations

import pytest
import torch
from engine_tiny import (
    events,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread)
    read_jsonl,
    tiny_cfg,
    train_losses,
)

import trainer.training.doctor_hook as doctor_hook
import trainer.training.engine as engine
from trainer.errors import CheckpointError
from trainer.rundir import run_format as rf
from trainer.training.checkpoint import load_checkpoint, save_atomic
from trainer.training.stopping import EarlyStopping
from trainer.training.tasks.char_lm import CharLM


def ckpt_files(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_keeps_last_best_and_the_newest_periodic_checkpoints(runs_dir):
    assert engine.train(tiny_cfg(keep_checkpoints=2), runs_dir, "keep") == rf.FINISHED
    run_dir = runs_dir / "keep"
    assert ckpt_files(run_dir) == ["best.pt", "last.pt", "step_00000030.pt", "step_00000040.pt"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 40
    vals = {r["step"]: r["val/loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "val/loss" in r}
    assert sorted(vals) == [10, 20, 30, 40]
    best_step = min(vals, key=vals.get)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["step"] == best_step
    assert best["early_stopping"]["best"] == pytest.approx(vals[best_step])
    status = read_status(run_dir)
    assert status["best_val_loss"] == pytest.approx(vals[best_step])
    assert (status["state"], status["task"], status["max_steps"], status["step"]) == ("finished", "char_lm", 40, 40)


def read_status(run_dir):
    import json

    return json.loads((run_dir / "status.json").read_text())


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"model": {}, "step": 1}, path)

    def torn_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"model": {}, "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_a_truncated_checkpoint_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"model": {}, "step": 1}, path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot be loaded.*pick another"):
        load_checkpoint(path)


def test_early_stopping_counts_evals_without_min_delta_improvement():
    early = EarlyStopping(patience=2, min_delta=0.1)
    assert early.observe(2.0) is True
    assert early.observe(1.95) is True  # a new lowest val/loss (best.pt) but not a 0.1 improvement
    assert not early.should_stop
    assert early.observe(1.99) is False
    assert early.should_stop and early.best == 1.95


def test_early_stopping_ends_the_run_and_keeps_the_best_checkpoint(runs_dir):
    cfg = tiny_cfg(early_stopping__patience=1, early_stopping__min_delta=100.0)
    assert engine.train(cfg, runs_dir, "early") == rf.FINISHED
    run_dir = runs_dir / "early"
    finish = events(run_dir, "finish")[-1]
    assert finish["step"] == 20 and "early stopping" in finish["message"]
    assert max(train_losses(run_dir)) == 20
    assert {"best.pt", "last.pt"} <= set(ckpt_files(run_dir))


class NaNAfter25(CharLM):
    def compute_loss(self, model, batch, step):
        out = super().compute_loss(model, batch, step)
        if step >= 24 and model.training:  # the 25th update onwards
            out.loss = out.loss * float("nan")
        return out


def test_non_finite_loss_is_logged_as_null_and_last_checkpoint_stays_healthy(runs_dir, monkeypatch):
    monkeypatch.setattr(engine, "get_task_class", lambda name: NaNAfter25)
    assert engine.train(tiny_cfg(), runs_dir, "nan") == rf.FINISHED
    run_dir = runs_dir / "nan"
    losses = train_losses(run_dir)
    assert sorted(losses) == list(range(1, 41))  # every row kept
    assert all(losses[s] is not None for s in range(1, 25))
    assert all(losses[s] is None for s in range(25, 41))
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 20
    skipped = [e for e in events(run_dir, "checkpoint") if not e["files"]]
    assert skipped and "not finite" in skipped[0]["message"] and "step 20" in skipped[0]["message"]


class FakeDoctor:
    """Raises non_finite when the logged train/loss is null or NaN, as the real detector does."""

    def __init__(self, config):
        self.config = config

    def observe(self, kind, record):
        loss = record.get("train/loss", 0.0)
        if kind == "metrics" and (loss is None or loss != loss):
            return [
                {
                    "code": "non_finite",
                    "severity": "critical",
                    "step": record["step"],
                    "message": f"train/loss is {loss} at step {record['step']}",
                    "evidence": {"train/loss": None},
                    "remedy": [{"set": {"lr": 1e-4}, "why": "smaller steps"}],
                }
            ]
        return []


def test_doctor_stop_on_non_finite_stops_and_keeps_the_healthy_checkpoint(runs_dir, monkeypatch):
    monkeypatch.setattr(engine, "get_task_class", lambda name: NaNAfter25)
    monkeypatch.setattr(doctor_hook, "OnlineDoctor", FakeDoctor)
    assert engine.train(tiny_cfg(doctor__enabled=True), runs_dir, "doc") == rf.STOPPED
    run_dir = runs_dir / "doc"
    alert = events(run_dir, "alert")[0]
    assert (alert["code"], alert["severity"], alert["step"]) == ("non_finite", "critical", 25)
    assert alert["remedy"] == [{"set": {"lr": 1e-4}, "why": "smaller steps"}]
    stop = events(run_dir, "stop")[-1]
    assert stop["step"] == 25 and "doctor: non_finite" in stop["message"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 20
    assert read_status(run_dir)["state"] == "stopped"


def test_critical_alert_stops_only_when_on_critical_is_stop(runs_dir, monkeypatch):
    monkeypatch.setattr(engine, "get_task_class", lambda name: NaNAfter25)
    monkeypatch.setattr(doctor_hook, "OnlineDoctor", FakeDoctor)
    cfg = tiny_cfg(doctor__enabled=True, doctor__stop_on=[], doctor__on_critical="off")
    assert engine.train(cfg, runs_dir, "nostop") == rf.FINISHED
    assert len(events(runs_dir / "nostop", "alert")) == 16  # steps 25..40: one per logged row


def test_real_online_doctor_stops_a_non_finite_run(runs_dir, monkeypatch):
    pytest.importorskip("trainer.doctor")
    monkeypatch.setattr(engine, "get_task_class", lambda name: NaNAfter25)
    assert engine.train(tiny_cfg(doctor__enabled=True), runs_dir, "real-doc") == rf.STOPPED
    run_dir = runs_dir / "real-doc"
    codes = [e["code"] for e in events(run_dir, "alert")]
    assert "non_finite" in codes and "doctor_unavailable" not in codes
    assert events(run_dir, "stop")[-1]["step"] == 25
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 20


def test_last_pt_is_also_written_once_the_last_checkpoint_is_old(runs_dir, monkeypatch):
    # a checkpoint_interval no run of this length reaches: only the age of the last one writes last.pt
    monkeypatch.setattr(engine, "CHECKPOINT_MAX_AGE_S", 0.0)
    cfg = tiny_cfg(max_steps=12, checkpoint_interval=1000, log_interval=4, eval_interval=1000)
    assert engine.train(cfg, runs_dir, "aged") == rf.FINISHED
    written = [e for e in events(runs_dir / "aged") if e["kind"] == "checkpoint"]
    # steps 4 and 8 by age; at 12 the eval writes best.pt and the end of training last.pt
    assert [(e["step"], e["files"]) for e in written] == [
        (4, ["last.pt"]),
        (8, ["last.pt"]),
        (12, ["best.pt"]),
        (12, ["last.pt"]),
    ]
    assert "0 s since the last one" in written[0]["message"]
    assert ckpt_files(runs_dir / "aged") == ["best.pt", "last.pt"]  # no numbered file: it is not periodic
