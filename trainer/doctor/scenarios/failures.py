"""Failure shapes for the doctor's scenario suite, at the incident reports' magnitudes
(../shared/seeds).

Each shape is a function of a RunGenerator (trainer/doctor/scenarios/run.py) that bends one series
from an onset on and, for slow failures, sets the step by which the evidence exists (g.evidence).
SHAPES maps the scenario name to it, EXPECTED_CODE to the code the doctor must raise, and SUDDEN
names the failures judged on their onset (within 2 log intervals) rather than on their evidence.
"""

from __future__ import annotations

import math


def non_finite(g):
    base = g.row
    g.row = lambda step: {**base(step), "train/loss": None, "grad/norm": None} if g.after(step) else base(step)


def loss_spike(g):
    # Report 003: GPT-2 fine-tuning, 6.65 jumping to 9.58, then decaying back.
    base = g.loss_clean

    def spiked(step):
        if not g.after(step):
            return base(step)
        rows = (step - g.onset) / g.log_interval
        return base(step) * (1 + (9.58 / 6.65 - 1) * math.exp(-rows / 5))

    g.loss_clean = spiked


def loss_rising(g):
    base = g.loss_clean
    g.onset_fraction = g.rng.uniform(0.3, 0.5)
    onset = g.round_step(g.onset_fraction * g.max_steps)
    rise = g.rng.uniform(0.4, 0.8)  # fraction of the level by the end of the run
    g.loss_clean = lambda step: base(step) * (1 + rise * max(0, step - onset) / (g.max_steps - onset))
    g.onset = onset
    # The evidence exists once the clean curve is 15% above its best.
    g.evidence = g.first_step(lambda s: s >= onset and g.loss_clean(s) > 1.15 * base(onset))


def curriculum_too_fast(g):
    # Report 002: exponential ramp over 5,000 preschool steps, loss 0.26 -> 2.3.
    g.max_steps = g.rng.choice([8000, 10000])
    g.log_interval = g.rng.choice([10, 20])
    g.warmup = 100
    g.overrides = {"curriculum": {"ramp": "exponential", "preschool_steps": 5000, "start": 0.1}}
    g.loss_clean = lambda step: 0.02 + 2.33 * g.difficulty(step) * (1 - 0.1 * step / g.max_steps)
    g.onset = g.log_interval
    g.evidence = lambda: g.first_step(lambda s: g.loss_clean(s) > 1.15 * g.loss_clean(g.log_interval * 20))


def loss_plateau(g):
    # Report 001: 1.09 -> 0.98 after an initial drop, then flat for the rest of the run.
    g.l0, g.l_inf = 1.09, 0.98
    g.tau = g.rng.uniform(0.02, 0.04)
    g.overrides = {"schedule": "constant"}
    g.onset = g.round_step(3 * g.tau * g.max_steps)
    g.evidence = g.round_step(max(g.onset / 0.75, g.onset + 50 * g.log_interval, g.onset + 0.1 * g.max_steps))


def variance_collapse(g):
    # Report 001: pred_std 0.03 vs target_std 0.86 (1:29) and the loss of a mean predictor.
    g.regression = True
    g.l0, g.l_inf = 1.05, 0.3
    base_stds, base_loss = g.stds, g.loss_clean
    g.stds = lambda step: (0.03 * (1 + g.gauss(0.2)), 0.86) if g.after(step) else base_stds(step)
    g.loss_clean = lambda step: 0.98 if g.after(step) else base_loss(step)


def token_collapse(g):
    # Report 000: punctuation-only samples.
    base = g.text

    def collapsed(step):
        if not g.after(step):
            return base(step)
        return "".join(g.rng.choice(",,,:::, ") for _ in range(190)) + " him:,,,'::,"

    g.text = collapsed


def val_below_train(g):
    # Report 001: val 0.27 against train 0.98.
    base = g.val
    g.val = lambda step: 0.28 * g.loss_clean(step) * (1 + g.gauss(0.01)) if g.after(step) else base(step)


def overfitting(g):
    g.tau = g.rng.uniform(0.08, 0.15)
    g.onset_fraction = g.rng.uniform(0.3, 0.6)
    onset = g.round_step(g.onset_fraction * g.max_steps)
    best = g.loss_clean(onset) * 1.03
    rise = g.rng.uniform(0.1, 0.2)

    def val_clean(step):
        v = g.loss_clean(step) * 1.03
        return v if step < onset else best * (1 + rise * (step - onset) / (g.max_steps - onset))

    g.val = lambda step: val_clean(step) * (1 + g.gauss(0.003))
    g.onset = onset
    # The evidence exists once the rise clears 2% plus twice the eval noise (0.3%).
    g.evidence = g.first_step(lambda s: s >= onset and val_clean(s) > (1.02 + 2 * 0.003) * best)


def overfitting_creep(g):
    # Issue 11: a val loss that creeps up after its best, 4-8% by the end of the run, in the eval noise
    # of an ordinary run (a quarter of the train noise per eval), was reported ~900 steps late.
    g.tau = g.rng.uniform(0.08, 0.15)
    g.onset_fraction = g.rng.uniform(0.3, 0.5)
    onset = g.round_step(g.onset_fraction * g.max_steps)
    best = g.loss_clean(onset) * 1.03
    rise = g.rng.uniform(0.04, 0.08)

    def val_clean(step):
        v = g.loss_clean(step) * 1.03
        return v if step < onset else best * (1 + rise * (step - onset) / (g.max_steps - onset))

    g.val = lambda step: val_clean(step) * (1 + g.gauss(g.noise / 4))
    g.onset = onset
    # The evidence exists once the rise is 2% of the best (less is not worth a warning) and three eval
    # noise sd (a smaller rise cannot be told from noise at one eval).
    g.evidence = g.first_step(lambda s: s >= onset and val_clean(s) > best * (1 + max(0.02, 3 * g.noise / 4)))


def dead_parameters(g):
    base = g.grads

    def dead(step):
        record = base(step)
        if g.after(step):
            record["norms"]["celestial_key_projection.weight"] = 0.0
            record["norms"]["celestial_query_projection.weight"] = 0.0
        return record

    g.grads = dead


def exploding_gradients(g):
    base = g.grad_norm
    g.grad_norm = lambda step: base(step) * (30.0 if g.onset <= step < g.onset + 3 * g.log_interval else 1.0)


def gradient_climb(g):
    # Issue 11: grad/norm growing steadily, 10x over 15% of the run (100x or more by its end), which
    # the jump rule's running median followed without alarm.
    base = g.grad_norm
    span = 0.15 * g.max_steps
    g.onset_fraction = g.rng.uniform(0.3, 0.6)
    g.onset = g.round_step(g.onset_fraction * g.max_steps)
    g.grad_norm = lambda step: base(step) * 10 ** (max(0, step - g.onset) / span)
    g.evidence = g.round_step(g.onset + span * math.log10(4))  # 4x above its level


def vanishing_gradients(g):
    base = g.grad_norm
    span = 0.1 * g.max_steps

    def vanishing(step):
        if not g.after(step):
            return base(step)
        return base(step) * 10 ** (-3 * min(1.0, (step - g.onset) / span))

    g.grad_norm = vanishing
    g.onset_fraction = g.rng.uniform(0.3, 0.6)
    g.onset = g.round_step(g.onset_fraction * g.max_steps)
    g.evidence = g.round_step(g.onset + span * 2 / 3)  # 100x below the level


def slowdown(g):
    # Report 003: 1.0 steps/s falling to 0.6.
    base = g.speed
    g.speed = lambda step: base(step) * (0.6 if g.after(step) else 1.0)
    g.onset = g.round_step(g.onset_fraction * g.max_steps)
    g.evidence = g.onset + 10 * g.log_interval  # the 20-row median has crossed


def memory_growth(g):
    base = g.rss
    g.onset = g.round_step(g.onset_fraction * g.max_steps)
    rate = g.rng.uniform(0.3, 1.0)  # MB per step
    g.rss = lambda step: base(step) + rate * max(0, step - g.onset)
    level = base(g.onset)
    g.evidence = g.first_step(lambda s: s > g.onset and rate * (s - g.onset) > max(0.2 * level, 100))


def lr_zero(g):
    base = g.lr
    g.lr = lambda step: 0.0 if g.after(step) else base(step)


def lr_off_schedule(g):
    # A resume that lost the schedule: the LR jumps back to its peak and stays there.
    g.onset_fraction = g.rng.uniform(0.4, 0.7)
    base = g.lr
    g.lr = lambda step: g.cfg.lr if g.after(step) else base(step)


SHAPES = {
    "non_finite": non_finite,
    "loss_spike": loss_spike,
    "loss_rising": loss_rising,
    "curriculum_too_fast": curriculum_too_fast,
    "loss_plateau": loss_plateau,
    "variance_collapse": variance_collapse,
    "token_collapse": token_collapse,
    "val_below_train": val_below_train,
    "overfitting": overfitting,
    "overfitting_creep": overfitting_creep,
    "dead_parameters": dead_parameters,
    "exploding_gradients": exploding_gradients,
    "gradient_climb": gradient_climb,
    "vanishing_gradients": vanishing_gradients,
    "slowdown": slowdown,
    "memory_growth": memory_growth,
    "lr_zero": lr_zero,
    "lr_off_schedule": lr_off_schedule,
}
EXPECTED_CODE = {
    "non_finite": "non_finite",
    "loss_spike": "loss_spike",
    "loss_rising": "loss_rising",
    "curriculum_too_fast": "loss_rising",
    "loss_plateau": "loss_plateau",
    "variance_collapse": "variance_collapse",
    "token_collapse": "token_collapse",
    "val_below_train": "val_below_train",
    "overfitting": "overfitting",
    "overfitting_creep": "overfitting",
    "dead_parameters": "dead_parameters",
    "exploding_gradients": "exploding_gradients",
    "gradient_climb": "exploding_gradients",
    "vanishing_gradients": "vanishing_gradients",
    "slowdown": "slowdown",
    "memory_growth": "memory_growth",
    "lr_zero": "lr_anomaly",
    "lr_off_schedule": "lr_anomaly",
}
SUDDEN = {"non_finite", "loss_spike", "exploding_gradients"}
