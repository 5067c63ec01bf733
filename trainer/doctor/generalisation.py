"""Detectors comparing val/loss with train/loss: val_below_train and overfitting.

Both act on rows that carry val/loss (one per eval); the train reference is ctx.train, the
smoothed train/loss at the same step.
"""

from __future__ import annotations

import math
from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import (
    Detector,
    deviation_noise,
    eval_noise,
    finite,
    fmt,
    line_deviations,
    median,
    robust_scatter,
    theil_sen_slope,
)
from trainer.rundir import run_format as rf


def _train_now(track) -> float | None:
    """Train loss at this eval: median of the last 3 train rows (short, so a falling loss does not lag)."""
    if track.count < 3:
        return None
    return median(list(track.recent)[-3:])


class ValBelowTrain(Detector):
    """val/loss far below train/loss for several evals (report 001: 0.27 vs 0.98).

    statistic: val/loss / train/loss (train = median of the last 3 train rows)
    fires when the ratio < max_ratio for confirm_evals consecutive evals after warm-up, and the mean
    log ratio of those evals (at most noise_evals of them) is below log(max_ratio) by noise_z times
    its own standard error: the ratio's eval-to-eval noise over the last noise_evals evals before
    those (or within them, where those before show fewer than min_deviations line deviations), and at
    least what the train side's row noise puts into it. Where the
    ratio jumps by factors from one eval to the next, two low evals in a row are chance, not a gap
    in how train and val are measured.
    """

    code = "val_below_train"
    title = "Validation loss far below training loss"
    cause = (
        "Train and val are not measured the same way (dropout on in training only), or the splits leak or differ "
        "in difficulty (report 001)."
    )
    max_ratio = 0.6
    confirm_evals = 2
    rearm_rows = 2
    # A user's loop at an LR 100x too high (examples/plain_loop.py --lr 0.5): each eval is one
    # snapshot of weights that jump about, and val / train ran from 0.2x to 5x of its median (1.04)
    # from one eval to the next; two evals under 0.6 in a row came by chance every ~20 evals and
    # raised "suspect leakage" 6 times in one run. Report 001's split held 0.27 vs 0.98 eval after eval.
    noise_z = 3.0
    noise_evals = 12
    min_deviations = 2  # each eval's distance from the line through its neighbours; grown by 1 + 2.5 / n
    mean_abs_floor = 0.8  # as overfitting's
    median3_sd = 0.67  # sd of the median of 3 normal draws, in sd of one draw
    thresholds = ("max_ratio", "confirm_evals", "noise_z", "noise_evals", "min_deviations")

    def __init__(self, ctx):
        super().__init__(ctx)
        # (step, log(val / train)) of the last evals judged: a streak's newest noise_evals and as many before
        self.log_ratios: deque[tuple[int, float]] = deque(maxlen=2 * self.noise_evals)

    def _beyond_noise(self) -> tuple[bool, float]:
        """(the streak's mean log ratio is below log(max_ratio) by noise_z standard errors, the
        ratio's eval-to-eval noise in log units: 0 while nothing shows it).

        The noise is read from the evals before the streak, and from the streak's own only where
        those are too few (a gap from the first eval on); never through a line with an eval on each
        side of the streak's start: the gap itself, a step of the ratio where the val set leaked, is
        not noise, and with a handful of evals (one an epoch) it read as so much noise that a 5x gap
        went unreported."""
        ratios = list(self.log_ratios)
        k = min(self.streak, len(ratios), self.noise_evals)  # a long streak: its newest evals
        streak, before = ratios[-k:], ratios[:-k][-self.noise_evals :]
        # The train side's part of it is known from the first rows: the median of 3 rows moves by
        # ~0.67 of one row's log noise (a loop whose loss jumps by factors from batch to batch).
        track = self.ctx.train
        noise = self.median3_sd * track.log_noise() if len(track.log_diffs) >= 8 else 0.0
        deviations = line_deviations(before)
        if len(deviations) < self.min_deviations:
            # Only where the evals before cannot show it: the streak's own are its low evals alone,
            # and their scatter reads low (a chance run of 4 in a noisy loop read 0.32 for 0.55).
            deviations += line_deviations(streak)
        if len(deviations) >= self.min_deviations:
            noise = max(noise, deviation_noise(deviations, self.mean_abs_floor))
        if noise == 0:
            return True, 0.0
        mean = sum(v for _, v in streak) / len(streak)
        return mean < math.log(self.max_ratio) - self.noise_z * noise / math.sqrt(len(streak)), noise

    def healthy_reason(self) -> str:
        return (
            f"val/loss stayed above {self.max_ratio:g} x train/loss, or went under it by no more than "
            "the ratio's own eval-to-eval noise"
        )

    def observe(self, step, row):
        val = row.get(rf.VAL_LOSS)
        if not finite(val):
            return None
        train = _train_now(self.ctx.train)
        if train is None or train <= 0 or self.ctx.in_warmup(step):
            return None
        self.observed += 1
        ratio = val / train
        if ratio > 0:
            self.log_ratios.append((step, math.log(ratio)))
        if not self.confirmed(ratio < self.max_ratio, self.confirm_evals):
            return None
        beyond, noise = self._beyond_noise() if ratio > 0 else (True, 0.0)
        if not beyond:
            return None  # the streak goes on: each further low eval adds to the evidence
        cfg = self.ctx.cfg
        dropout = cfg.dropout if cfg is not None else None
        cause = (
            f"dropout {dropout} is active in training but not in eval"
            if dropout
            else "with no dropout, suspect leakage between the splits or an easier validation split"
        )
        return self.fire(
            step,
            f"val/loss {fmt(val)} is {1 / ratio:.1f}x below train/loss {fmt(train)} at step {step} "
            f"({self.streak} evals in a row); {cause}",
            evidence := {
                "val_loss": val,
                "train_loss": train,
                "ratio": round(ratio, 3),
                "evals": self.streak,
                "log_ratio_noise": round(noise, 3),
            },
            R.for_alert(self.code, self.ctx, evidence, step),
        )


class Overfitting(Detector):
    """val/loss rising while train/loss keeps falling (or holds).

    statistic: val level (median of the last 3 evals) against its best level so far, and the rise
    of the Theil-Sen line through the evals after that best (at most trend_points of them) over
    the steps since it; train level against its level at the best eval
    fires when, for confirm_evals evals while the train level (median of 11 rows) has not risen
    above its level at the best eval (by more than 1% or its per-row noise), either
    - the val level > best * (1 + min_relative_rise) + noise_multiple * eval-to-eval noise (a rise
      shown by the latest evals alone), or
    - after min_trend_evals evals, the line has risen > best * min_relative_rise and
      > trend_z * the line's own noise (noise * sqrt(12 / evals)) and the val level is above the
      best: a creep too slow for three evals to show is shown by all of them (issue 11: a creep
      was reported ~900 steps late).
    One alert per episode: the episode ends only when val makes a new best.
    Says where early stopping would have stopped.
    """

    code = "overfitting"
    title = "Overfitting"
    cause = "The model memorises the training set; training went on past the best validation point."
    min_relative_rise = 0.02
    # 4, not 2: the best is the lowest of dozens of medians of 3 (about 1.5 sd of one median below
    # the true level after 40 evals) and a fresh median as far above it now and then: on a flat val
    # with 2% eval noise, 2 sd + 2% fired on a healthy run in several of 20 (issue 11).
    noise_multiple = 4.0
    confirm_evals = 1  # the median of 3 evals already needs two of them high
    mean_abs_floor = 0.8  # the noise read is at least 0.8 x the mean-absolute-deviation estimate
    min_trend_evals = 5
    # 4 on the pooled noise (3.5 on the larger of the two reads, before): a flat val with 2% eval
    # noise and 40 evals made a line that steep on none of 300 seeds (pooled at 3.5: 7; the larger
    # read at 3.5: 3), and the trend found 161 of the second generator's 200 dev-block overfitting
    # runs (the larger read at 3.5: 157).
    trend_z = 4.0
    trend_points = 24
    thresholds = ("min_relative_rise", "noise_multiple", "mean_abs_floor", "min_trend_evals", "trend_z", "trend_points")

    def healthy_reason(self) -> str:
        return f"val/loss never rose {self.min_relative_rise:.0%} above its best while train/loss fell"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.best = None
        self.best_step = None
        self.anchor_step = None  # the last best that improved on the one before by more than the noise
        self.train_at_best = None
        self.evals: list[tuple[int, float]] = []

    def _noise(self) -> float:
        """Eval-to-eval noise from each eval's distance to the line through its neighbours (a trend
        cancels out, at any spacing: base.line_deviations) over the last 30 evals,
        leaving out the early fast drop, whose curvature would pass for noise: from the last real
        improvement on once there are 6 evals since (a val still curving down towards its best read
        twice its noise, and an overfitting rise was found late), else from where val came within
        5% of its best.

        The MAD of a dozen second differences is 37% efficient and now and then reads a third of
        the true spread, which lets an ordinary noisy eval pass for a rise (1 healthy run in 140
        at 20 seeds). The mean absolute deviation (88% efficient) rarely reads that low but grows
        with the curvature left in the window, so it is only a floor, at mean_abs_floor of itself.
        """
        points = self.evals[-30:]
        settled = next((i for i, (_, v) in enumerate(points) if v <= 1.05 * self.best), 0)
        since_anchor = [(s, v) for s, v in points if self.anchor_step is not None and s >= self.anchor_step]
        if len(since_anchor) >= 6:  # past the best the curve bends no more: only its noise is left
            points = since_anchor
        elif len(points) - settled >= 6:
            points = points[settled:]
        if len(points) < 6:
            return 0.0
        return eval_noise(points, self.mean_abs_floor)

    def _creeping(self, step) -> bool:
        """The line through the evals since the last real improvement has risen by more than the
        minimum rise and trend_z times its own noise. From the last *real* improvement (by more than
        the eval noise): on a creep, noise makes a new best now and then that is no better than the
        old one, and measuring from it would start the evidence over each time.

        The noise pools two reads of it, the evals' scatter about that line and the eval-to-eval
        noise, as their root mean square: either alone, read from a dozen evals, now and then reads a
        third of the true spread, and the larger of the two read 1.44x the true eval noise at the
        median (issue 11, the second generator's dev block), which hid slow creeps; pooled, both must
        read low together. With the t distribution's allowance for a spread read from few evals."""
        after = [(s, v) for s, v in self.evals[-4 * self.trend_points :] if s > self.anchor_step]
        n = len(after)
        if n < self.min_trend_evals:
            return False
        stride = -(-n // self.trend_points)
        slope = theil_sen_slope(after[::stride])
        scatter = robust_scatter([v - slope * s for s, v in after], self.mean_abs_floor)
        noise = math.sqrt((scatter**2 + self._noise() ** 2) / 2)
        rise = slope * (step - self.anchor_step)
        z = self.trend_z * (1 + 2.5 / n)  # about Student's t at 0.1% for n - 2 degrees of freedom
        return noise > 0 and rise > self.best * self.min_relative_rise and rise > z * noise * (12 / n) ** 0.5

    def observe(self, step, row):
        val = row.get(rf.VAL_LOSS)
        if not finite(val):
            return None
        track = self.ctx.train
        train = track.level
        self.observed += 1
        self.evals.append((step, val))
        level = median([v for _, v in self.evals[-3:]])
        if self.best is None or level < self.best:
            if self.best is None or level < self.best - self._noise():
                self.anchor_step = step  # a real improvement: the creep is measured from here
            self.best, self.best_step, self.train_at_best = level, step, train
            self.streak, self.open = 0, False  # a new best val ends an overfitting episode
            return None
        noise = self._noise()
        # No noise estimate yet (under 6 evals settled near the best): no rise can be told from noise.
        above = noise > 0 and level > self.best * (1 + self.min_relative_rise) + self.noise_multiple * noise
        if not above and level > self.best:
            above = self._creeping(step)
        train_not_rising = (
            train is not None
            and self.train_at_best is not None
            and train <= self.train_at_best + max(0.01 * abs(self.train_at_best), track.noise())
        )
        rising = above and train_not_rising and not self.ctx.ramping(step)
        if not rising:
            # Not note_healthy(): an episode is the stretch since the best val, so it ends only at a
            # new best. A val level that dips under the threshold for a few evals without a new best
            # would otherwise re-arm it and report the same rise twice.
            self.streak = 0
            return None
        self.streak += 1
        if self.streak < self.confirm_evals:
            return None
        cfg = self.ctx.cfg
        patience = cfg.early_stopping.patience if cfg is not None and cfg.early_stopping.patience else 3
        after = [s for s, _ in self.evals if s > self.best_step]
        stop_step = after[patience - 1] if len(after) >= patience else None
        where = (
            f"early stopping with patience {patience} would have stopped at step {stop_step}"
            if stop_step is not None
            else f"early stopping with patience {patience} would stop {patience - len(after)} evals from now"
        )
        return self.fire(
            step,
            f"val/loss rose from {fmt(self.best)} (step {self.best_step}) to {fmt(level)} at step {step} while "
            f"train/loss went from {fmt(self.train_at_best)} to {fmt(train)}; {where}",
            evidence := {
                "best_val": self.best,
                "best_step": self.best_step,
                "val": level,
                "val_noise": noise,
                "train_at_best": self.train_at_best,
                "train": train,
                "early_stop_step": stop_step,
                "patience": patience,
            },
            R.for_alert(self.code, self.ctx, evidence, step),
        )
