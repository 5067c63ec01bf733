"""What a run writes: metrics series, grads.jsonl, samples, events, status; fork and resume
with changes; a crash ends as failed with its traceback."""

from __future__ import annotations

import json

import pytest
import torch
from engine_tiny import (
    events,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread)
    read_jsonl,
    tiny_cfg,
    train_losses,
)
from torch import nn

import trainer.training.engine as engine
from trainer.config.schedule import lr_at
from trainer.errors import CheckpointError
from trainer.rundir import run_format as rf
from trainer.training.tasks.base import LossOutput
from trainer.training.tasks.char_lm import CharLM


class ProbedTask(CharLM):
    """CharLM plus a parameter that never gets a gradient, one whose gradient is exactly zero,
    a named loss part and fixed output probes."""

    def build_model(self):
        model = super().build_model()
        model.unused = nn.Parameter(torch.ones(3))
        model.zeroed = nn.Parameter(torch.ones(3))
        return model

    def compute_loss(self, model, batch, step):
        out = super().compute_loss(model, batch, step)
        raw = model.module if hasattr(model, "module") else model
        loss = out.loss + 0.0 * raw.zeroed.sum()
        probes = {"out/pred_std": torch.tensor(0.5), "out/target_std": torch.tensor(1.0)}
        return LossOutput(loss=loss, parts={"ce": out.loss.detach()}, probes=probes)


@pytest.fixture
def probed_run(runs_dir, monkeypatch):
    monkeypatch.setattr(engine, "get_task_class", lambda name: ProbedTask)
    assert engine.train(tiny_cfg(max_steps=21, log_interval=5), runs_dir, "probed") == rf.FINISHED
    return runs_dir / "probed"


def test_grads_records_every_parameter_and_zero_for_missing_or_zero_gradients(probed_run):
    records = read_jsonl(probed_run / rf.GRADS_FILE)
    assert [r["step"] for r in records] == [7, 14, 21]
    for r in records:
        assert r["norms"]["unused"] == 0.0 and r["update_ratios"]["unused"] == 0.0
        assert r["norms"]["zeroed"] == 0.0 and r["update_ratios"]["zeroed"] == 0.0
        assert r["norms"]["wte.weight"] > 0 and r["update_ratios"]["wte.weight"] > 0
        assert set(r["norms"]) == set(r["update_ratios"])
        assert "transformer.h.0.attn.c_attn.weight" in r["norms"]


def test_grads_records_carry_the_mechanism_evidence_remedies_read(probed_run):
    cfg = tiny_cfg(max_steps=21, log_interval=5)  # as probed_run
    for r in read_jsonl(probed_run / rf.GRADS_FILE):
        weights = r[rf.WEIGHT_NORMS]
        assert set(weights) == set(r["norms"]) and weights["unused"] == pytest.approx(3**0.5)
        # the char GPT's tables: token and position embeddings, one joint norm
        joint = (weights["wte.weight"] ** 2 + weights["wpe.weight"] ** 2) ** 0.5
        assert r[rf.EMBEDDING_NORM] == pytest.approx(joint, rel=1e-6)
        assert r[rf.PROBE_LR] == pytest.approx(lr_at(r["step"] - 1, cfg))
        assert r[rf.DECAY_PER_STEP] == pytest.approx(r[rf.PROBE_LR] * cfg.weight_decay)
        assert r[rf.EFFECTIVE_BATCH] == cfg.batch_size * cfg.grad_accum_steps
        matrices = [v for name, v in weights.items() if name.endswith("weight") and "ln" not in name]
        assert r[rf.DECAYED_NORM] == pytest.approx(sum(v * v for v in matrices) ** 0.5, rel=1e-6)  # AdamW's 2-D group
    first, *later = read_jsonl(probed_run / rf.GRADS_FILE)
    assert set(first[rf.INITIAL]) == {rf.EMBEDDING_NORM, rf.DECAYED_NORM} and not any(rf.INITIAL in r for r in later)
    assert first[rf.INITIAL][rf.EMBEDDING_NORM] != pytest.approx(first[rf.EMBEDDING_NORM])  # before the first step


def test_metric_rows_carry_losses_probes_speed_and_system_series(probed_run):
    rows = read_jsonl(probed_run / rf.METRICS_FILE)
    train_rows = [r for r in rows if rf.TRAIN_LOSS in r]
    assert [r["step"] for r in train_rows] == [5, 10, 15, 20, 21]  # log_interval and the last step
    for r in train_rows:
        for key in (rf.LR, rf.GRAD_NORM, rf.STEPS_PER_S, rf.TOKENS_PER_S, rf.RSS_MB, rf.CPU_PERCENT):
            assert isinstance(r[key], float), key
        assert r["loss/ce"] == pytest.approx(r[rf.TRAIN_LOSS], rel=1e-5)
        assert r[rf.PRED_STD] == pytest.approx(0.5) and r[rf.TARGET_STD] == pytest.approx(1.0)
        assert r[rf.VARIANCE_RATIO] == pytest.approx(0.5)
        assert r[rf.TOKENS_PER_S] == pytest.approx(r[rf.STEPS_PER_S] * 4 * 16)
        assert r[rf.RSS_MB] > 10
    assert train_rows[0][rf.LR] == pytest.approx(lr_at(4, tiny_cfg()))
    assert [r["step"] for r in rows if rf.VAL_LOSS in r] == [10, 20, 21]


def test_samples_events_and_status_describe_the_run(probed_run):
    samples = read_jsonl(probed_run / rf.SAMPLES_FILE)
    assert [s["step"] for s in samples] == [15, 21]
    assert all(len(s["text"]) == 20 for s in samples)
    kinds = [e["kind"] for e in events(probed_run)]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert "checkpoint" in kinds
    status = json.loads((probed_run / rf.STATUS_FILE).read_text())
    assert (status["state"], status["step"], status["max_steps"], status["task"]) == ("finished", 21, 21, "char_lm")


def test_fork_continues_the_step_numbers_and_reproduces_the_parent(runs_dir):
    assert engine.train(tiny_cfg(), runs_dir, "parent") == rf.FINISHED
    ckpt = runs_dir / "parent" / "checkpoints" / "step_00000020.pt"
    assert engine.train(tiny_cfg(), runs_dir, "child", mode="fork", checkpoint=ckpt, parent="parent") == rf.FINISHED
    parent, child = train_losses(runs_dir / "parent"), train_losses(runs_dir / "child")
    assert sorted(child) == list(range(21, 41))
    assert child == {s: v for s, v in parent.items() if s > 20}
    status = json.loads((runs_dir / "child" / rf.STATUS_FILE).read_text())
    assert status["parent"] == "parent"
    fork = events(runs_dir / "child", "fork")[0]
    assert fork["step"] == 20 and fork["parent"] == "parent"


def test_init_from_fine_tunes_from_another_runs_weights_at_step_zero(runs_dir):
    assert engine.train(tiny_cfg(), runs_dir, "base") == rf.FINISHED
    best = runs_dir / "base" / "checkpoints" / "last.pt"
    assert engine.train(tiny_cfg(init_from=str(best), max_steps=10), runs_dir, "tuned") == rf.FINISHED
    assert engine.train(tiny_cfg(max_steps=10), runs_dir, "scratch") == rf.FINISHED
    base, tuned, scratch = (train_losses(runs_dir / r) for r in ("base", "tuned", "scratch"))
    assert min(tuned) == 1  # a new run: its own step numbers, fresh optimizer and schedule
    assert tuned[1] < 0.9 * scratch[1]  # it starts where the base run ended, not from random weights
    assert tuned[1] == pytest.approx(base[40], rel=0.25)
    start = events(runs_dir / "tuned", "start")[0]
    assert start["init_from"] == str(best) and "(step 40)" in start["message"]


def test_init_from_that_does_not_fit_the_model_is_refused_before_anything_is_written(runs_dir):
    assert engine.train(tiny_cfg(), runs_dir, "base") == rf.FINISHED
    wider = tiny_cfg(init_from=str(runs_dir / "base" / "checkpoints" / "last.pt"), model={"n_embd": 64})
    with pytest.raises(CheckpointError, match="does not fit this config's model"):
        engine.train(wider, runs_dir, "wider")
    assert not (runs_dir / "wider").exists()
    with pytest.raises(CheckpointError, match="not found"):
        engine.train(tiny_cfg(init_from=str(runs_dir / "nope.pt")), runs_dir, "missing")
    assert not (runs_dir / "missing").exists()


def test_resume_with_a_new_lr_follows_it_and_records_the_change(runs_dir):
    cfg = tiny_cfg(max_steps=30, schedule="constant")
    run_dir = runs_dir / "lr"
    assert engine.train(cfg, runs_dir, "lr") == rf.FINISHED
    (run_dir / "control").mkdir(exist_ok=True)
    longer = tiny_cfg(max_steps=40, schedule="constant", lr=2e-4)
    changes = {"lr": (1e-3, 2e-4), "max_steps": (30, 40)}
    state = engine.train(
        longer, runs_dir, "lr", mode="resume", checkpoint=run_dir / "checkpoints" / "last.pt", changes=changes
    )
    assert state == rf.FINISHED
    lrs = {r["step"]: r[rf.LR] for r in read_jsonl(run_dir / rf.METRICS_FILE) if rf.LR in r}
    assert lrs[30] == pytest.approx(1e-3) and lrs[31] == pytest.approx(2e-4) and lrs[40] == pytest.approx(2e-4)
    change = events(run_dir, "config_change")[-1]
    assert change["step"] == 30 and change["changes"]["lr"] == [1e-3, 2e-4]


class Exploding(CharLM):
    def compute_loss(self, model, batch, step):
        if step == 4:
            raise RuntimeError("boom at step 4")
        return super().compute_loss(model, batch, step)


def test_an_exception_ends_the_run_failed_with_its_traceback(runs_dir, monkeypatch):
    monkeypatch.setattr(engine, "get_task_class", lambda name: Exploding)
    assert engine.train(tiny_cfg(), runs_dir, "boom") == rf.FAILED
    error = events(runs_dir / "boom", "error")[-1]
    assert error["step"] == 4 and "Traceback" in error["message"] and "boom at step 4" in error["message"]
    status = json.loads((runs_dir / "boom" / rf.STATUS_FILE).read_text())
    assert status["state"] == "failed" and "boom at step 4" in status["message"]


def test_ema_weights_are_checkpointed_and_evaluated_with_accumulation(runs_dir):
    from trainer.training.checkpoint import load_checkpoint

    cfg = tiny_cfg(max_steps=20, ema=0.9, grad_accum_steps=2, log_interval=5)
    assert engine.train(cfg, runs_dir, "ema") == rf.FINISHED
    ckpt = load_checkpoint(runs_dir / "ema" / "checkpoints" / "last.pt")
    ema, model = ckpt["ema"], ckpt["model"]
    assert set(ema) == set(model)
    assert not torch.equal(ema["wte.weight"], model["wte.weight"])  # an average lags the weights
    rows = [r for r in read_jsonl(runs_dir / "ema" / rf.METRICS_FILE) if rf.TOKENS_PER_S in r]
    assert all(r[rf.TOKENS_PER_S] == pytest.approx(r[rf.STEPS_PER_S] * 2 * 4 * 16) for r in rows)


def test_the_online_doctor_sees_each_metrics_row_as_written_with_its_time(runs_dir, monkeypatch):
    # Without the time the slowdown alert could not name the run of ours that took the cores (issue
    # 15): seen in a browser, a parent beside its fork was told of "other processes" only.
    from trainer.training.doctor_hook import DoctorHook

    seen = []
    observe = DoctorHook.observe

    def spy(self, kind, record):
        if kind == "metrics":
            seen.append(dict(record))
        return observe(self, kind, record)

    monkeypatch.setattr(DoctorHook, "observe", spy)
    assert (
        engine.train(tiny_cfg(max_steps=20, log_interval=5, doctor={"enabled": True}), runs_dir, "timed") == rf.FINISHED
    )
    written = read_jsonl(runs_dir / "timed" / rf.METRICS_FILE)
    assert len(seen) == len(written) >= 6  # 4 train rows and the evals
    for record, row in zip(seen, written):
        assert record["step"] == row["step"] and record[rf.TIME] == row[rf.TIME]
        assert {k for k in record if k != rf.TIME} <= set(row)
