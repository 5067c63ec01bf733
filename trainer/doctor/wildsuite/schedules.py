"""Learning-rate schedules as other libraries compute them, as functions of the optimizer step.

Each is written from the library's own definition (cited per function), not from ours, because a
run from another program logs *its* curve: Hugging Face's linear decay reaches exactly 0.0 at the
last step, timm updates per epoch (a staircase), OneCycleLR starts at max_lr / 25.
"""

from __future__ import annotations

import numpy as np


def hf_linear(steps, peak: float, warmup: int, total: int) -> np.ndarray:
    """transformers.get_linear_schedule_with_warmup: 0 -> peak over warmup, then linear to 0.0."""
    s = np.asarray(steps, dtype=float)
    up = s / max(1, warmup)
    down = np.maximum(0.0, (total - s) / max(1, total - warmup))
    return peak * np.where(s < warmup, up, down)


def cosine(steps, peak: float, warmup: int, total: int, floor: float = 0.0, per: int = 1) -> np.ndarray:
    """HF get_cosine_schedule_with_warmup (floor 0) and timm's CosineLRScheduler (floor = lr_min,
    per = steps per epoch: timm steps the scheduler once an epoch, so the logged LR is a staircase)."""
    s = (np.asarray(steps, dtype=float) // per) * per
    progress = np.clip((s - warmup) / max(1, total - warmup), 0.0, 1.0)
    decayed = floor + (peak - floor) * 0.5 * (1.0 + np.cos(np.pi * progress))
    return np.where(s < warmup, peak * s / max(1, warmup), decayed)


def step_decay(steps, peak: float, milestones: list[int], gamma: float) -> np.ndarray:
    """torch.optim.lr_scheduler.MultiStepLR: multiplied by gamma at each milestone."""
    s = np.asarray(steps)
    passed = np.searchsorted(np.asarray(sorted(milestones)), s, side="right")
    return peak * gamma**passed


def one_cycle(steps, peak: float, total: int, pct_start: float = 0.3) -> np.ndarray:
    """torch.optim.lr_scheduler.OneCycleLR defaults: max_lr/25 -> max_lr (cosine) over pct_start,
    then cosine down to max_lr / 25 / 1e4."""
    s = np.asarray(steps, dtype=float)
    start, end = peak / 25.0, peak / 25.0 / 1e4
    up_len = max(1.0, pct_start * total - 1)
    up = np.clip(s / up_len, 0, 1)
    down = np.clip((s - up_len) / max(1.0, total - 1 - up_len), 0, 1)
    rising = peak + (start - peak) * 0.5 * (1 + np.cos(np.pi * up))
    falling = end + (peak - end) * 0.5 * (1 + np.cos(np.pi * down))
    return np.where(s <= up_len, rising, falling)


def constant(steps, peak: float, warmup: int = 0) -> np.ndarray:
    """Constant, or HF get_constant_schedule_with_warmup when warmup > 0."""
    s = np.asarray(steps, dtype=float)
    return peak * np.minimum(1.0, s / max(1, warmup)) if warmup else np.full(s.shape, peak)


def inverse_sqrt(steps, peak: float, warmup: int) -> np.ndarray:
    """fairseq / HF inverse_sqrt: linear warm-up, then peak * sqrt(warmup / step)."""
    s = np.maximum(np.asarray(steps, dtype=float), 1.0)
    return np.where(s < warmup, peak * s / max(1, warmup), peak * np.sqrt(max(1, warmup) / s))
