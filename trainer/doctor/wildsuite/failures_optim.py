"""Failures of the optimisation itself: gradients that explode, vanish or die, and learning rates
that are off by a factor, jump, or reach zero. Labels as in failures.py.
"""

from __future__ import annotations

import math

import numpy as np

from trainer.doctor.wildsuite import schedules
from trainer.doctor.wildsuite.draft import Draft, draw, loguniform
from trainer.doctor.wildsuite.failures import draw_onset, first_step


def _with_grads(rng) -> Draft:
    d = draw(rng)
    d.log_grad = True
    return d


# --- gradient norm -------------------------------------------------------------------------------
def explode(rng) -> Draft:
    """The norm jumps 100-10,000x at the onset and stays there (clipping keeps the loss finite;
    it worsens 0-30%)."""
    d = _with_grads(rng)
    onset = draw_onset(d)
    after = d.steps >= onset
    d.grad = np.where(after, d.grad * loguniform(rng, 100, 1e4), d.grad)
    d.loss = np.where(after, d.loss * (1 + rng.uniform(0, 0.3)), d.loss)
    return d.label("exploding_gradients", True, onset)


def explode_slow(rng) -> Draft:
    """Issue 11: a steady exponential climb, 10x over 10-20% of the run and 100x+ by its end.
    Evidence: the clean norm is 10x its level at the onset."""
    d = _with_grads(rng)
    onset = draw_onset(d, 0.1, 0.55)
    per_step = math.log(10) / (d.max_steps * rng.uniform(0.1, 0.2))
    growth = np.exp(per_step * np.clip(d.steps - onset, 0, None))
    level = d.grad[d.row(onset)]
    d.grad = d.grad * growth
    return d.label("exploding_gradients", False, onset, first_step(d, d.grad >= 10 * level, onset))


def vanish(rng) -> Draft:
    """The norm falls 100-10,000x at once (units saturated, a branch cut off) and learning stops:
    the loss stays where it was."""
    d = _with_grads(rng)
    onset = draw_onset(d)
    after = d.steps >= onset
    d.grad = np.where(after, d.grad / loguniform(rng, 100, 1e4), d.grad)
    d.loss = np.where(after, d.loss[d.row(onset)], d.loss)
    return d.label("vanishing_gradients", True, onset)


def vanish_slow(rng) -> Draft:
    """The mirror of explode_slow: 10x down over 10-20% of the run, 100x+ by the end, the loss
    flattening as it goes. Evidence: the clean norm is 10x below its level at the onset."""
    d = _with_grads(rng)
    onset = draw_onset(d, 0.1, 0.55)
    per_step = math.log(10) / (d.max_steps * rng.uniform(0.1, 0.2))
    decay = np.exp(-per_step * np.clip(d.steps - onset, 0, None))
    level, i = d.grad[d.row(onset)], d.row(onset)
    d.grad = d.grad * decay
    d.loss = np.where(d.steps >= onset, d.loss[i] + (d.loss - d.loss[i]) * decay, d.loss)
    return d.label("vanishing_gradients", False, onset, first_step(d, d.grad <= level / 10, onset))


# --- dead parameters -----------------------------------------------------------------------------
def _probed(rng, task: str | None = None) -> Draft:
    d = draw(rng, task=task)
    if len(d.probe_steps) < 10:
        every = max(d.log_interval, d.max_steps // 20 // d.log_interval * d.log_interval)
        d.probe_steps = np.arange(every, d.max_steps + 1, every)
    return d


def _kill(d: Draft, onset: int) -> None:
    names = list(d.param_scales)
    for name in d.rng.choice(names, size=int(d.rng.integers(1, 5)), replace=False):
        d.dead[str(name)] = onset


def dead_parameters(rng) -> Draft:
    """Dead ReLUs or a branch cut off mid-run: 1-4 tensors' gradients are exactly 0 from one probe
    on. Onset: that probe."""
    d = _probed(rng)
    onset = int(d.probe_steps[int(rng.integers(len(d.probe_steps) // 5, len(d.probe_steps) * 3 // 4))])
    _kill(d, onset)
    return d.label("dead_parameters", True, onset)


def dead_from_start(rng) -> Draft:
    """Report 001: celestial_* projections with a gradient of exactly 0.0 from the first probe."""
    d = _probed(rng, task="regression")
    onset = int(d.probe_steps[0])
    for name in d.param_scales:
        if name.startswith("celestial_") or rng.random() < 0.15:
            d.dead[name] = onset
    return d.label("dead_parameters", True, onset)


# --- learning rate -------------------------------------------------------------------------------
def _with_lr(rng, **choices) -> Draft:
    d = draw(rng, **choices)
    d.log_lr = True
    return d


def lr_resumed_high(rng) -> Draft:
    """Report 003: resumed with LEARNING_RATE set 5-20x the schedule's value (15x there); the loss
    spikes 20-50% after it. The config is the old one, the new one, or absent."""
    d = _with_lr(rng)
    onset = draw_onset(d, 0.3, 0.8)
    factor = rng.uniform(5, 20)
    d.resumes.append((onset - d.log_interval if onset > d.log_interval else onset, float(loguniform(rng, 600, 7200))))
    after = d.steps >= onset
    d.lr = np.where(after, d.lr * factor, d.lr)
    d.loss = np.where(
        after, d.loss * (1 + rng.uniform(0.2, 0.5) * np.exp(-(d.steps - onset) / (0.1 * d.max_steps))), d.loss
    )
    if d.config is not None and rng.random() < 0.5:
        key = next((k for k in ("lr", "learning_rate") if k in d.config), None)
        if key:
            d.events.append(
                (onset, "config_change", f"{key} changed", {"changes": {key: [d.config[key], d.config[key] * factor]}})
            )
            d.config[key] = d.config[key] * factor
    return d.label("lr_anomaly", True, onset)


def lr_jump(rng) -> Draft:
    """The LR multiplied 5-50x mid-run with no resume and no schedule behind it (a param_group
    edited by hand, a scheduler state loaded from another run)."""
    d = _with_lr(rng, schedule=str(rng.choice(["constant", "cosine", "linear"])))
    onset = draw_onset(d)
    d.lr = np.where(d.steps >= onset, d.lr * rng.uniform(5, 50), d.lr)
    return d.label("lr_anomaly", True, onset)


def lr_zero(rng) -> Draft:
    """The LR becomes exactly 0 mid-run and stays (a scheduler stepped past its end, a lambda that
    returns 0); the loss stops moving."""
    d = _with_lr(rng)
    onset = draw_onset(d, 0.2, 0.7)
    after = d.steps >= onset
    d.lr = np.where(after, 0.0, d.lr)
    d.loss = np.where(after, d.loss[d.row(onset)], d.loss)
    return d.label("lr_anomaly", True, onset)


def lr_zero_early(rng) -> Draft:
    """A linear/cosine decay sized for too few steps (counted in batches with gradient
    accumulation, or epochs miscounted): it reaches exactly 0 at 25-60% of the run and stays.
    Onset: the first row at 0."""
    d = _with_lr(rng, schedule=str(rng.choice(["linear", "cosine"])), program=str(rng.choice(["hf_trainer", "script"])))
    end = int(d.max_steps * rng.uniform(0.25, 0.6))
    fn = schedules.hf_linear if d.schedule == "linear" else schedules.cosine
    d.lr = fn(d.steps, d.lr_peak, min(d.warmup, end // 2), end)
    onset = first_step(d, d.lr <= 0.0, 0)
    d.loss = np.where(d.steps >= onset, d.loss[d.row(onset)], d.loss)
    return d.label("lr_anomaly", True, onset)


def lr_off_by_factor(rng) -> Draft:
    """The config says lr X and a constant schedule; the logged LR is 10-100x off from step one
    (a unit slip, a LambdaLR returning the LR instead of a factor)."""
    d = _with_lr(rng, schedule="constant", program="script")
    factor = loguniform(rng, 10, 100) ** (1 if rng.random() < 0.5 else -1)
    d.config = {"lr": d.lr_peak, "schedule": "constant", "max_steps": d.max_steps}
    d.lr = d.lr * factor
    d.status_kind = str(rng.choice(["api", "none"]))
    return d.label("lr_anomaly", True, int(d.steps[0]))
