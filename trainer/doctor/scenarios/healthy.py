"""Healthy run shapes for the doctor's scenario suite: the doctor must raise no warning on them.

Each shape is a function of a RunGenerator (trainer/doctor/scenarios/run.py) that changes its draws
or series before the run is built; SHAPES maps the scenario name to it.
"""

from __future__ import annotations

import math


def fast(g):
    g.tau = g.rng.uniform(0.03, 0.06)


def slow(g):
    g.tau = g.rng.uniform(0.5, 1.0)


def noisy(g):
    g.noise = g.rng.uniform(0.05, 0.08)


def long_warmup(g):
    # Progress follows the warm-up's LR, so the loss barely moves until the warm-up is over.
    g.warmup = g.round_step(g.rng.uniform(0.15, 0.3) * g.max_steps)
    g.progress = lambda step: (
        sum(min(1.0, (s + 1) / (g.warmup + 1)) for s in range(0, step, g.log_interval)) * g.log_interval / g.max_steps
    )


def curriculum(g):
    # Report 002's fix: a linear ramp over 20,000 steps; the model follows it.
    g.max_steps = g.rng.choice([30000, 40000])
    g.log_interval = 50
    g.warmup = 1000
    g.overrides = {"curriculum": {"ramp": "linear", "preschool_steps": 20000, "start": 0.1}}
    g.loss_clean = lambda step: 0.25 + 2.1 * g.difficulty(step) * (0.55 + 0.45 * math.exp(-step / 15000))


def late_improvement(g):
    g.tau = g.rng.uniform(0.15, 0.25)
    base = g.loss_clean
    g.loss_clean = lambda step: base(step) - 0.05 * step / g.max_steps


def regression(g):
    g.regression = True
    g.l0, g.l_inf = 1.05, g.rng.uniform(0.25, 0.35)


SHAPES = {
    "healthy_fast": fast,
    "healthy_slow": slow,
    "healthy_noisy": noisy,
    "healthy_long_warmup": long_warmup,
    "healthy_curriculum": curriculum,
    "healthy_late_improvement": late_improvement,
    "healthy_regression": regression,
}
