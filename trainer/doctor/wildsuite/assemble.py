"""From a draft's clean curves to the records a program would have written: noise, the wall
clock (with resume gaps and eval pauses), the rows each program logs, samples, probes, events.
"""

from __future__ import annotations

import math

import numpy as np

from trainer.doctor.wildsuite.draft import Draft
from trainer.doctor.wildsuite.run import WildRun
from trainer.doctor.wildsuite.text import sample_text
from trainer.rundir import run_format as rf

T0 = 1_764_000_000.0  # a fixed start time: the same seed gives the same bytes


def _ar_noise(rng, n: int, rho: float) -> np.ndarray:
    """Unit-variance AR(1) noise: batch losses drift together over a few rows (data order)."""
    z = rng.standard_normal(n)
    out = np.empty(n)
    prev = 0.0
    for i in range(n):
        prev = rho * prev + math.sqrt(1 - rho * rho) * z[i]
        out[i] = prev
    return out


def _clock(d: Draft, rng) -> np.ndarray:
    """Wall-clock time of each train row: steps / true speed, eval pauses, resume gaps."""
    interval = np.diff(np.concatenate([[0], d.steps]))
    true_speed = d.speed * np.exp(rng.normal(0, d.speed_noise, d.steps.shape))
    seconds = interval / true_speed
    eval_cost = rng.uniform(0.02, 0.3) * (d.max_steps / max(1, len(d.eval_steps))) / float(np.median(d.speed))
    seconds = seconds + eval_cost * np.diff(np.concatenate([[0], np.searchsorted(d.eval_steps, d.steps, "right")]))
    for step, gap in d.resumes:
        seconds[d.row(step + 1)] += gap
    return T0 + np.cumsum(seconds)


def _value(d: Draft, series: str, step: int, value: float) -> float:
    bad = d.bad.get(series)
    return bad[1] if bad is not None and step >= bad[0] else value


def _metrics(d: Draft, rng, clock: np.ndarray) -> list[dict]:
    loss = np.maximum(d.loss * (1 + d.loss_noise * _ar_noise(rng, len(d.steps), rng.uniform(0, 0.4))), 1e-4)
    grad = d.grad * np.exp(rng.normal(0, d.grad_noise, d.steps.shape))
    speed = d.speed * (1 + rng.normal(0, d.speed_noise, d.steps.shape))
    rss = d.rss * (1 + rng.normal(0, 0.003, d.steps.shape))
    rows = []
    for i, step in enumerate(int(s) for s in d.steps):
        row = {
            "step": step,
            "time": round(float(clock[i]), 3),
            rf.TRAIN_LOSS: _value(d, rf.TRAIN_LOSS, step, float(loss[i])),
        }
        if d.log_lr:
            row[rf.LR] = _value(d, rf.LR, step, float(d.lr[i]))
        if d.log_grad:
            row[rf.GRAD_NORM] = math.inf if step in d.grad_bad_steps else _value(d, rf.GRAD_NORM, step, float(grad[i]))
        if d.log_speed:
            row[rf.STEPS_PER_S] = float(speed[i])
        if d.log_rss:
            row[rf.RSS_MB] = float(rss[i])
        if d.cuda is not None:
            row[rf.CUDA_MEM_MB] = float(d.cuda[i])
        if d.ratio is not None and i % d.ratio_every == 0:
            ratio = float(d.ratio[i] * math.exp(rng.normal(0, 0.05)))
            target = float(d.target_std * math.exp(rng.normal(0, 0.05)))
            row.update({rf.PRED_STD: ratio * target, rf.TARGET_STD: target, rf.VARIANCE_RATIO: ratio})
        for name, values in d.extra.items():
            row[name] = float(values[i])
        rows.append(row)
    val = d.val * (1 + rng.normal(0, d.val_noise, d.val.shape))
    for step, value in zip(d.eval_steps, val):
        i = d.row(int(step))
        t = float(clock[i] - (d.steps[i] - step) / d.speed[i])
        row = {"step": int(step), "time": round(t, 3), rf.VAL_LOSS: _value(d, rf.VAL_LOSS, int(step), float(value))}
        if "epoch" in d.extra:
            row["epoch"] = float(np.interp(step, d.steps, d.extra["epoch"]))
        if d.program == "hf_trainer":  # the Trainer's eval metrics, under its own names
            row.update(
                eval_runtime=round(float(rng.uniform(5, 60)), 2),
                eval_steps_per_second=round(float(rng.uniform(2, 20)), 2),
            )
        rows.append(row)
    if d.program == "hf_trainer" and d.last_step is None:
        # The Trainer's last on_log: run totals under its own names (train_loss is the run's mean).
        runtime = float(clock[-1] - clock[0])
        rows.append(
            {
                "step": int(d.steps[-1]),
                "time": round(float(clock[-1]) + 0.5, 3),
                "train_runtime": round(runtime, 2),
                "train_steps_per_second": round(d.max_steps / runtime, 3),
                "total_flos": float(rng.uniform(1e15, 1e18)),
                "train_loss": float(np.mean(loss)),
            }
        )
    rows.sort(key=lambda r: (r["step"], rf.VAL_LOSS in r or "train_runtime" in r))
    return rows


def _samples(d: Draft, rng, time_at) -> list[dict]:
    out = []
    for j, step in enumerate(int(s) for s in d.sample_steps):
        record = {"step": step, "time": time_at(step)}
        if d.task == "text":
            record["text"] = sample_text(rng, float(d.quality[j]), float(d.punct[j]), int(rng.integers(80, 200)))
        elif d.task == "regression":
            n = int(rng.choice([16, 32, 64]))
            target = d.target_std * (np.sin(np.linspace(0, rng.uniform(2, 8), n) + rng.uniform(0, 6)) * 1.3)
            target = target + rng.normal(0, 0.2 * d.target_std, n)
            ratio = float(np.interp(step, d.steps, d.ratio if d.ratio is not None else np.full(d.steps.shape, 0.9)))
            pred = target.mean() + ratio * (target - target.mean()) + rng.normal(0, 0.02 * d.target_std, n)
            record.update(pred=[round(float(v), 5) for v in pred], target=[round(float(v), 5) for v in target])
        else:
            continue  # an image classifier logs no samples
        out.append(record)
    return out


def _grads(d: Draft, rng, time_at) -> list[dict]:
    out = []
    for step in (int(s) for s in d.probe_steps):
        level = float(np.interp(step, d.steps, d.grad))
        lr_share = float(np.interp(step, d.steps, d.lr)) / d.lr_peak
        norms, ratios = {}, {}
        for name, scale in d.param_scales.items():
            dead = d.dead.get(name)
            if dead is not None and step >= dead:
                norms[name], ratios[name] = 0.0, 0.0
                continue
            norms[name] = float(scale * level * math.exp(rng.normal(0, 0.3)))
            ratios[name] = float(1e-3 * lr_share * math.exp(rng.normal(0, 0.3)))
        out.append({"step": step, "time": time_at(step), "norms": norms, "update_ratios": ratios})
    return out


def _events(d: Draft, time_at, clock: np.ndarray, last: int) -> list[dict]:
    events = [{"step": 0, "time": T0 - 5.0, "kind": "start", "message": f"{d.program} started", "device": "cuda"}]
    for step, gap in d.resumes:
        message = f"resumed from checkpoint-{step} after {gap / 3600:.1f} h"
        i = d.row(step + 1)  # the first row after the restart; the process came back just before it
        restarted = float(clock[i] - (d.steps[i] - step) / d.speed[i])
        events.append({"step": step, "time": round(restarted, 3), "kind": "resume", "message": message})
    for step, kind, message, extra in d.events:
        events.append({"step": step, "time": time_at(step), "kind": kind, "message": message, **extra})
    if d.last_step is None:
        events.append({"step": last, "time": time_at(last) + 1.0, "kind": "finish", "message": "training finished"})
    events.sort(key=lambda e: e["time"])
    return events


def _status(d: Draft, last: int, time_end: float) -> dict | None:
    state = rf.FAILED if d.last_step is not None else rf.FINISHED
    if d.status_kind == "none":
        return None
    status = {"state": state, "step": last, "started": T0, "updated": time_end, "parent": None, "message": ""}
    if d.status_kind == "api":
        status[rf.STATUS_WRITER] = rf.WRITER_API
    else:
        status["imported_from"] = "tensorboard: lightning_logs/version_0"
    return status


def assemble(d: Draft, name: str, seed: int) -> WildRun:
    rng = d.rng
    clock = _clock(d, rng)

    def time_at(step: int) -> float:
        return round(float(np.interp(step, d.steps, clock)), 3)

    metrics = _metrics(d, rng, clock)
    samples = _samples(d, rng, time_at)
    grads = _grads(d, rng, time_at)
    last = d.max_steps if d.last_step is None else d.last_step
    metrics, samples, grads = ([r for r in records if r["step"] <= last] for records in (metrics, samples, grads))
    return WildRun(
        name=name,
        seed=seed,
        code=d.code,
        sudden=d.sudden,
        onset=d.onset,
        evidence=d.evidence,
        max_steps=d.max_steps,
        log_interval=d.log_interval,
        program=d.program,
        seen_every=d.seen_every(),
        metrics=metrics,
        grads=grads,
        samples=samples,
        events=_events(d, time_at, clock, last),
        config=d.config,
        status=_status(d, last, time_at(last) + 1.0),
    )
