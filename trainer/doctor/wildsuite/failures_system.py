"""Failures of the machine rather than the model: a run that slows down, memory that keeps
growing. Labels as in failures.py.
"""

from __future__ import annotations

import numpy as np

from trainer.doctor.wildsuite.draft import Draft, draw, loguniform
from trainer.doctor.wildsuite.failures import draw_onset, first_step


def _with_speed(rng) -> Draft:
    d = draw(rng)
    d.log_speed = rng.random() < 0.7  # else only the rows' wall-clock times show it (HF logs no speed)
    return d


def slowdown(rng) -> Draft:
    """Report 003: steps/s falls to 0.4-0.7x at once and stays (1.0 -> 0.6 steps/s on MPS)."""
    d = _with_speed(rng)
    onset = draw_onset(d)
    d.speed = np.where(d.steps >= onset, d.speed * rng.uniform(0.4, 0.7), d.speed)
    return d.label("slowdown", True, onset)


def slowdown_slow(rng) -> Draft:
    """Throttling or a degrading data loader: steps/s declines to 0.4-0.7x over 10-30% of the run.
    Evidence: speed is 25% below its level at the onset."""
    d = _with_speed(rng)
    onset = draw_onset(d, 0.15, 0.6)
    level = d.speed[d.row(onset)]
    share = np.clip((d.steps - onset) / (d.max_steps * rng.uniform(0.1, 0.3)), 0, 1)
    d.speed = d.speed * (1 - (1 - rng.uniform(0.4, 0.7)) * share)
    return d.label("slowdown", False, onset, first_step(d, d.speed <= 0.75 * level, onset))


def _leak(d: Draft, series: np.ndarray, rng) -> tuple[np.ndarray, int, int]:
    onset = draw_onset(d, 0.05, 0.5)
    growth = rng.uniform(0.5, 3.0) * np.clip((d.steps - onset) / (d.max_steps - onset), 0, None)
    leaked = series * (1 + growth)
    # Evidence: 20% above its level at the onset, and still rising.
    return leaked, onset, first_step(d, leaked >= 1.2 * series[d.row(onset)], onset)


def memory_leak(rng) -> Draft:
    """Process memory grows linearly from the onset, +50-300% by the end (tensors kept in a list,
    a growing cache)."""
    d = draw(rng)
    d.log_rss = True
    d.rss, onset, evidence = _leak(d, d.rss, rng)
    return d.label("memory_growth", False, onset, evidence)


def cuda_leak(rng) -> Draft:
    """CUDA memory grows the same way (`total_loss += loss` keeping every graph)."""
    d = draw(rng)
    cuda = d.cuda if d.cuda is not None else np.full(d.steps.shape, loguniform(rng, 2000, 40000))
    d.cuda, onset, evidence = _leak(d, cuda, rng)
    return d.label("memory_growth", False, onset, evidence)
