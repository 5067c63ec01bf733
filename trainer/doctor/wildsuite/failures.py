"""Failing runs as other programs write them, each labelled with the code it is and when it began.

Labels come from what the failure is. A sudden failure is plain at its onset; a slow one has an
`evidence` step, by the rule stated in its function: the step by which an engineer looking at the
curves (smoothed over ~10 rows by eye) would call it. Onsets and magnitudes are drawn from the seed
over the ranges given, which come from the incident reports (000-003) unless said otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from trainer.doctor.wildsuite.draft import Draft, draw, loguniform


def draw_onset(d: Draft, lo: float = 0.2, hi: float = 0.8) -> int:
    return d.snap(d.max_steps * d.rng.uniform(lo, hi))


def first_step(d: Draft, mask: np.ndarray, onset: int, steps: np.ndarray | None = None) -> int:
    """The first step at or after onset where mask holds (the run's last step if it never does)."""
    steps = d.steps if steps is None else steps
    hits = np.flatnonzero(np.asarray(mask) & (steps >= onset))
    return int(steps[hits[0]]) if len(hits) else int(steps[-1])


def _visible(d: Draft) -> float:
    """The relative change in the loss an engineer sees at once: 10%, or 3 sigma of a 10-row mean."""
    return max(0.10, 3 * d.loss_noise / math.sqrt(10))


# --- non-finite ----------------------------------------------------------------------------------
def nan_loss(rng) -> Draft:
    """The loss turns NaN and stays (a HF Trainer keeps logging nan), or the script dies a few rows
    later with an error event."""
    d = draw(rng)
    onset = draw_onset(d)
    d.bad["train/loss"] = (onset, math.nan)
    d.bad["val/loss"] = (onset, math.nan)
    d.bad["grad/norm"] = (onset, float(rng.choice([math.nan, math.inf])))
    if rng.random() < 0.5:
        d.last_step = int(d.steps[min(len(d.steps) - 1, d.row(onset) + int(rng.integers(0, 6)))])
        d.events.append((d.last_step, "error", "RuntimeError: loss is nan", {"error": "RuntimeError: loss is nan"}))
    return d.label("non_finite", True, onset)


def inf_grad(rng) -> Draft:
    """fp32 overflow: the gradient norm is inf from the onset, the loss NaN 1-5 rows later."""
    d = draw(rng)
    d.log_grad = True
    onset = draw_onset(d)
    d.bad["grad/norm"] = (onset, math.inf)
    d.bad["train/loss"] = (int(d.steps[min(len(d.steps) - 1, d.row(onset) + int(rng.integers(1, 6)))]), math.nan)
    return d.label("non_finite", True, onset)


# --- loss ----------------------------------------------------------------------------------------
def loss_spike(rng) -> Draft:
    """A jump of 1.3-2.5x (report 003: 6.65 -> 9.58, 1.44x), at least 6 row-sigmas, that decays
    back over 1-20% of the run or leaves the loss 0-30% higher."""
    d = draw(rng)
    onset = draw_onset(d)
    size = max(rng.uniform(1.3, 2.5), 1 + 6 * d.loss_noise)
    tau = max(d.log_interval, d.max_steps * rng.uniform(0.01, 0.2))
    left = rng.uniform(0.0, 0.3) if rng.random() < 0.4 else 0.0
    after = np.clip(d.steps - onset, 0, None)
    bump = np.where(d.steps >= onset, (size - 1 - left) * np.exp(-after / tau) + left, 0.0)
    d.loss = d.loss * (1 + bump)
    d.grad = d.grad * (1 + bump * rng.uniform(2, 20))
    return d.label("loss_spike", True, onset)


def loss_rising(rng) -> Draft:
    """The loss stops falling and climbs 30-200% over 10-40% of the run, then stays up (an LR too
    high for the late phase, a data stream gone bad). Evidence: the clean loss is `_visible` above
    its level at the onset."""
    d = draw(rng)
    onset = draw_onset(d, 0.2, 0.6)
    i = d.row(onset)
    span = d.max_steps * rng.uniform(0.1, 0.4)
    rise = rng.uniform(0.3, 2.0)
    grown = 1 + rise * np.clip((d.steps - onset) / span, 0, 1)
    d.loss = np.where(d.steps >= onset, d.loss[i] * grown, d.loss)
    d.val = np.where(d.eval_steps >= onset, d.loss_at(d.eval_steps) * 1.04, d.val)
    return d.label("loss_rising", False, onset, first_step(d, d.loss >= d.loss[i] * (1 + _visible(d)), onset))


def curriculum_too_fast(rng) -> Draft:
    """Report 002: an exponential difficulty ramp over 2-8% of the run; the loss climbs 3-4x in
    that time (0.26 -> 2.33 there), overshoots the full-difficulty level by 20-60% and stays above it. Onset: step 0
    (the ramp is the failure). Evidence: the clean loss has doubled from its first row."""
    d = draw(rng, task="text", program="script")
    # At least 20 logged rows in the ramp, so the climb is seen as a climb, not a step.
    ramp = max(d.log_interval * 20, int(d.max_steps * rng.uniform(0.02, 0.08)))
    start = rng.uniform(0.05, 0.2)
    progress = np.minimum(1.0, d.steps / ramp)
    difficulty = np.where(progress >= 1, 1.0, 1 - (1 - start) * np.exp(-5 * progress))
    overwhelmed = 1 + rng.uniform(0.2, 0.6) * difficulty * np.exp(-np.maximum(0, d.steps - ramp) / (d.max_steps * 0.5))
    d.loss = d.curriculum_loss(difficulty) * overwhelmed
    d.val = np.minimum.accumulate(d.curriculum_loss(np.ones(d.steps.shape)) * 1.03)[[d.row(s) for s in d.eval_steps]]
    d.extra["curriculum/difficulty"] = difficulty
    if rng.random() < 0.6:  # our schema's keys, as report 002's fix would be written for our trainer
        curriculum = {"ramp": "exponential", "preschool_steps": ramp, "start": round(start, 3)}
    else:  # SEDD's own keys (report 002's config)
        curriculum = {"preschool_time": ramp, "difficulty_ramp": "exponential"}
    d.config = {"lr": d.lr_peak, "max_steps": d.max_steps, "curriculum": curriculum}
    return d.label("loss_rising", False, int(d.steps[0]), first_step(d, d.loss >= 2 * d.loss[0], 0))


def plateau_lr_too_low(rng) -> Draft:
    """A from-scratch model at an LR 100-1000x too low (1e-7..1e-6 for Adam): the loss moves
    0.5-3% off its chance level and sits there. Onset: where the small early drop is done (3 tau);
    evidence: 10% of the run later (a flat stretch an engineer would call stuck)."""
    d = draw(rng, task=str(rng.choice(["text", "vision"])), finetune=False)
    start = float(d.loss[0])
    tau = d.max_steps * rng.uniform(0.01, 0.04)
    d.loss = start * (1 - rng.uniform(0.005, 0.03) * (1 - np.exp(-d.steps / tau)))
    d.val = d.loss_at(d.eval_steps) * rng.uniform(1.0, 1.03)
    d.lr = d.lr / d.lr_peak * loguniform(rng, 1e-7, 1e-6)
    d.log_lr = True
    if d.config is not None:
        for key in ("lr", "learning_rate"):
            if key in d.config:
                d.config[key] = float(d.lr.max())
    onset = d.snap(3 * tau)
    return d.label("loss_plateau", False, onset, d.snap(onset + 0.1 * d.max_steps))


def plateau_regression(rng) -> Draft:
    """Report 001's loss: MSE on standardised targets drops from ~1.09 to ~0.98 and stays there for
    the rest of the run (the model predicts the mean). Onset/evidence as plateau_lr_too_low."""
    d = draw(rng, task="regression")
    d.ratio = None  # this run does not log its output spread
    tau = d.max_steps * rng.uniform(0.01, 0.04)
    level = rng.uniform(0.95, 1.0)
    d.loss = level + (rng.uniform(1.05, 1.12) - level) * np.exp(-d.steps / tau)
    d.val = d.loss_at(d.eval_steps) * rng.uniform(1.0, 1.03)
    onset = d.snap(3 * tau)
    return d.label("loss_plateau", False, onset, d.snap(onset + 0.1 * d.max_steps))


# --- outputs -------------------------------------------------------------------------------------
def _regression(rng) -> Draft:
    d = draw(rng, task="regression", keys="all")
    if d.ratio is None:
        d.ratio = np.full(d.steps.shape, 0.9)
    return d


def _towards_mean(d: Draft, onset: int, weight: np.ndarray) -> None:
    """A model predicting the mean has an MSE near the target variance (~1 when standardised)."""
    d.loss = np.where(d.steps >= onset, d.loss + weight * (0.98 - d.loss), d.loss)


def variance_collapse(rng) -> Draft:
    """Report 001: prediction std falls at once to 1/12..1/30 of the target's and stays."""
    d = _regression(rng)
    onset = draw_onset(d)
    d.ratio = np.where(d.steps >= onset, 1 / rng.uniform(12, 30), d.ratio)
    _towards_mean(d, onset, np.ones(d.steps.shape))
    return d.label("variance_collapse", True, onset)


def variance_collapse_slow(rng) -> Draft:
    """The spread shrinks geometrically to 1/12..1/30 over 15-40% of the run. Evidence: the ratio
    is below 0.1 (prediction std 10x below the target's)."""
    d = _regression(rng)
    onset = draw_onset(d, 0.15, 0.5)
    span = d.max_steps * rng.uniform(0.15, 0.4)
    end = 1 / rng.uniform(12, 30)
    share = np.clip((d.steps - onset) / span, 0, 1)
    d.ratio = np.where(d.steps >= onset, d.ratio[d.row(onset)] * (end / d.ratio[d.row(onset)]) ** share, d.ratio)
    _towards_mean(d, onset, share)
    return d.label("variance_collapse", False, onset, first_step(d, d.ratio < 0.1, onset))


def _text_with_samples(rng) -> Draft:
    d = draw(rng, task="text")
    if len(d.sample_steps) < 8:
        d.sample_steps = np.unique(np.linspace(0, d.max_steps, 12)[1:].astype(int) // d.log_interval * d.log_interval)
        d.quality = 1 - np.exp(-d.sample_steps / (d.max_steps * 0.1))
        d.punct = np.zeros(d.sample_steps.shape)
    return d


def token_collapse(rng) -> Draft:
    """Report 000: from one sample on, 80-97% of the text is ',' and ':'. Onset: that sample."""
    d = _text_with_samples(rng)
    j = int(rng.integers(len(d.sample_steps) // 3, len(d.sample_steps) - 2))
    d.punct = np.where(np.arange(len(d.sample_steps)) >= j, rng.uniform(0.8, 0.97), 0.0)
    return d.label("token_collapse", True, int(d.sample_steps[j]))


def token_collapse_slow(rng) -> Draft:
    """Punctuation takes over a little more in each sample, up to 90-97% by the last. Evidence:
    the first sample that is half punctuation."""
    d = _text_with_samples(rng)
    j = int(rng.integers(1, len(d.sample_steps) // 2))
    share = np.clip((np.arange(len(d.sample_steps)) - j + 1) / (len(d.sample_steps) - j), 0, 1)
    d.punct = share * rng.uniform(0.9, 0.97)
    onset = int(d.sample_steps[j])
    return d.label("token_collapse", False, onset, first_step(d, d.punct >= 0.5, onset, d.sample_steps))


# --- generalisation ------------------------------------------------------------------------------
def val_below_train(rng) -> Draft:
    """Report 001: val loss 2.5-5x below train (0.27 vs 0.98: 3.6x) from an eval on, e.g. the val
    set leaked into train, or a val set swapped on resume. Onset: that eval (often the first)."""
    d = draw(rng)
    j = 0 if rng.random() < 0.5 else int(rng.integers(0, max(1, len(d.eval_steps) * 2 // 3)))
    onset = int(d.eval_steps[j])
    factor = 1 / rng.uniform(2.5, 5.0)
    d.val = np.where(d.eval_steps >= onset, d.loss_at(d.eval_steps) * factor, d.val)
    return d.label("val_below_train", True, onset)


def val_below_train_slow(rng) -> Draft:
    """Leakage that grows (val examples memorised from train): val/train falls from ~1.03 to
    0.2-0.4 over 20-50% of the run. Evidence: the first eval where val is below half of train."""
    d = draw(rng)
    onset = int(d.eval_steps[int(rng.integers(0, max(1, len(d.eval_steps) // 2)))])
    span = d.max_steps * rng.uniform(0.2, 0.5)
    share = np.clip((d.eval_steps - onset) / span, 0, 1)
    ratio = 1.03 + (rng.uniform(0.2, 0.4) - 1.03) * share
    d.val = np.where(d.eval_steps >= onset, d.loss_at(d.eval_steps) * ratio, d.val)
    return d.label("val_below_train", False, onset, first_step(d, ratio < 0.5, onset, d.eval_steps))


def _overfit(rng, lo: float, hi: float) -> Draft:
    d = draw(rng)
    if len(d.eval_steps) < 8:
        d.eval_steps = np.arange(1, 13) * (d.max_steps // 12)
        d.val = np.minimum.accumulate(d.loss_at(d.eval_steps) * 1.03)
    j = int(rng.integers(len(d.eval_steps) // 4, len(d.eval_steps) // 2 + 1))
    best, onset = float(d.val[j]), int(d.eval_steps[j])
    rise = max(rng.uniform(lo, hi), 6 * d.val_noise)
    power = rng.uniform(1.0, 1.5)
    share = np.clip((d.eval_steps - onset) / (d.max_steps - onset), 0, 1) ** power
    d.val = np.where(d.eval_steps >= onset, best * (1 + rise * share), d.val)
    # Evidence: val is above its best by 3 eval-noise sigmas and at least 2%.
    threshold = best * max(3 * d.val_noise, 0.02)
    return d.label("overfitting", False, onset, first_step(d, d.val - best >= threshold, onset, d.eval_steps))


def overfitting(rng) -> Draft:
    """Val loss turns up from its best at 25-50% of the evals and ends 10-40% above it while train
    keeps falling (a small data set, no regularisation: report 000's 1000 epochs)."""
    return _overfit(rng, 0.1, 0.4)


def overfitting_creep(rng) -> Draft:
    """The same, creeping: 3-8% above the best by the end (issue 11: called ~900 steps late)."""
    return _overfit(rng, 0.03, 0.08)
