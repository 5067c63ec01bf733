"""Detectors on the level of the training loss: loss_spike, loss_rising, loss_plateau.

They read train/loss from metrics rows; the shared smoothed view of train/loss is ctx.train
(trainer/doctor/tracks.py), updated before they run. non_finite is in trainer/doctor/nonfinite.py.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, mad_sigma, make_alert, median
from trainer.rundir import run_format as rf


class LossSpike(Detector):
    """A jump far above the recent level, judged on first differences so a trend is not a spike.

    statistic: jump = train/loss - median(previous 3 values)
    fires when jump > z_threshold * robust sd of the previous `window` differences (+ their median)
    and jump > min_relative_jump * |previous level|, after warm-up and `min_rows` rows.
    """

    code = "loss_spike"
    title = "Loss spike"
    cause = "A noisy gradient (small batch, long blocks) met a large step; report 003 saw 6.65 to 9.58."
    window = 32
    min_rows = 16
    z_threshold = 6.0
    min_relative_jump = 0.15
    rearm_rows = 5
    thresholds = ("window", "min_rows", "z_threshold", "min_relative_jump")

    def healthy_reason(self) -> str:
        return (
            f"no train/loss jump above {self.z_threshold:g} robust sd "
            f"and {self.min_relative_jump:.0%} of the recent level"
        )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.previous: deque = deque(maxlen=3)
        self.diffs: deque = deque(maxlen=self.window)

    def observe(self, step, row):
        value = row.get(rf.TRAIN_LOSS)
        if not finite(value):
            return None
        self.observed += 1
        alert = None
        if self.previous:
            level = median(self.previous)
            jump = value - level
            big_enough = jump > self.min_relative_jump * abs(level)  # cheap test first
            if big_enough and len(self.diffs) >= self.min_rows and not self.ctx.in_warmup(step):
                center = median(self.diffs)
                sd = max(mad_sigma(self.diffs, center), 1e-3 * abs(level), 1e-12)
                z = (jump - center) / sd
                if z > self.z_threshold:
                    alert = self._alert(step, value, level, z)
                else:
                    self.clear()
            else:
                self.clear()
            self.diffs.append(value - self.previous[-1])
        self.previous.append(value)
        return alert

    def _alert(self, step, value, level, z):
        message = (
            f"train/loss jumped from {fmt(level)} to {fmt(value)} (+{(value / level - 1) * 100:.0f}%, "
            f"{z:.0f} robust sd) at step {step}"
            if level
            else f"train/loss jumped to {fmt(value)} at step {step}"
        )
        return self.fire(
            step,
            message,
            evidence := {"before": level, "after": value, "robust_z": round(z, 1)},
            R.for_alert(self.code, self.ctx, evidence, step),
        )


class LossRising(Detector):
    """A sustained increase of the smoothed train loss above its best level.

    statistic: level (median of 11 rows) - best level since arming
    fires when the rise > max(min_relative_rise * |best|, noise_multiple * per-row noise) for
    `confirm_rows` consecutive rows, after warm-up and `min_rows` rows.
    With a declared curriculum the rise is expected (armed after min_rows_curriculum rows, warm-up
    or not): info when the curriculum ramps at a pace the model follows; warning when the ramp is
    front-loaded, its peak pace (over pace_span_rows rows) above max_pace_ratio x its average pace
    (1 - start) / preschool_steps, as report 002's exponential ramp, or when the loss still rises
    lag_fraction of the ramp's length after full difficulty.
    """

    code = "loss_rising"
    title = "Loss rising"
    cause = (
        "The LR is more than the model can hold, or the task is getting harder faster than the model learns (a "
        "curriculum ramping too fast, report 002)."
    )
    min_rows = 20
    min_rows_curriculum = 5
    min_relative_rise = 0.15
    noise_multiple = 3.0
    confirm_rows = 5
    max_pace_ratio = 2.0  # an exponential ramp peaks at 5x its average pace, a linear one at 1x
    pace_span_rows = 3
    lag_fraction = 0.2
    rearm_rows = 10
    thresholds = ("min_rows", "min_rows_curriculum", "min_relative_rise", "noise_multiple", "confirm_rows")

    def healthy_reason(self) -> str:
        return f"the smoothed train/loss never rose {self.min_relative_rise:.0%} above its best level"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.best = None
        self.best_step = None
        self.info_sent = False
        self.max_pace = 0.0
        self.full_step = None  # first step at full difficulty
        self.peak_at_full = None
        self.rows_at_full = 0  # train rows since the curriculum reached full difficulty

    def observe(self, step, row):
        ctx = self.ctx
        if rf.CURRICULUM_DIFFICULTY in row and finite(row[rf.CURRICULUM_DIFFICULTY]):
            self._note_pace()
        if not finite(row.get(rf.TRAIN_LOSS)):
            return None
        self.observed += 1
        track = ctx.train
        if ctx.has_curriculum:
            if track.count < self.min_rows_curriculum:
                return None
        elif track.count < self.min_rows or ctx.in_warmup(step):
            return None
        level = track.level
        if self.best is None or level < self.best:
            self.best, self.best_step = level, step
        if ctx.has_curriculum:
            lagging = self._lagging(step, level)
            if lagging:
                return lagging
        threshold = max(self.min_relative_rise * abs(self.best), self.noise_multiple * track.noise())
        if not self.confirmed(level - self.best > threshold, self.confirm_rows):
            return None
        return self._rising(step, level)

    def _rising(self, step, level):
        ctx = self.ctx
        rise = f"train/loss rose from {fmt(self.best)} (step {self.best_step}) to {fmt(level)} at step {step}"
        evidence = {"best": self.best, "best_step": self.best_step, "now": level}
        if not ctx.has_curriculum:
            return self.fire(
                step,
                rise + ", a sustained increase",
                evidence,
                R.for_alert(self.code, ctx, evidence, step),
            )
        average = self._average_pace()
        ratio = self.max_pace / average if average else 0.0
        evidence.update(
            difficulty=ctx.difficulty_at(step),
            peak_pace_per_1000_steps=self.max_pace * 1000,
            average_pace_per_1000_steps=average * 1000 if average else None,
            pace_ratio=round(ratio, 2),
        )
        if ratio > self.max_pace_ratio:
            return self.fire(
                step,
                rise + f" while the curriculum raised difficulty at up to {self.max_pace * 1000:.3g} per 1000 steps, "
                f"{ratio:.1f}x its average pace: a front-loaded ramp, faster than the model can follow",
                evidence,
                R.for_alert(self.code, self.ctx, evidence, step),
            )
        if not self.info_sent:
            self.info_sent = True
            # An info is not an episode: a later too-fast or lagging finding still gets its warning.
            message = (
                rise + " while the declared curriculum raises difficulty at its planned pace "
                f"({self.max_pace * 1000:.2f} per 1000 steps): expected"
            )
            return make_alert(self.code, "info", step, message, evidence, [])
        return None

    def _average_pace(self) -> float | None:
        """The ramp's average pace: planned from config, else as logged so far."""
        cfg = self.ctx.cfg
        if cfg is not None and cfg.curriculum.ramp != "none" and cfg.curriculum.preschool_steps > 0:
            return (1.0 - cfg.curriculum.start) / cfg.curriculum.preschool_steps
        hist = self.ctx.difficulty_history
        end = next((i for i, (_, d) in enumerate(hist) if d >= 0.999), len(hist) - 1)
        if end < 1 or hist[end][0] <= hist[0][0]:
            return None
        return (hist[end][1] - hist[0][1]) / (hist[end][0] - hist[0][0])

    def _note_pace(self):
        hist = self.ctx.difficulty_history
        if len(hist) > self.pace_span_rows:
            (s0, d0), (s1, d1) = hist[-1 - self.pace_span_rows], hist[-1]
            if s1 > s0:
                self.max_pace = max(self.max_pace, (d1 - d0) / (s1 - s0))
        if self.full_step is None and hist[-1][1] >= 0.999:
            self.full_step = hist[-1][0]

    def _lagging(self, step, level):
        """Loss still climbing well after the curriculum reached full difficulty."""
        ctx = self.ctx
        if self.full_step is None:
            d = ctx.planned_difficulty(step)
            if d is None or d < 0.999:
                return None
            self.full_step = step
        # The level is a median of the last smooth_rows rows, so right after the ramp ends it still
        # mixes in easier rows and keeps climbing for half a window. The reference is the first
        # level made only of rows at full difficulty.
        self.rows_at_full += 1
        if self.peak_at_full is None:
            if self.rows_at_full >= ctx.train.smooth_rows:
                self.peak_at_full = level
            return None
        ramp = ctx.preschool_steps or self.full_step
        lag = step - self.full_step
        rising = level > self.peak_at_full + max(0.05 * abs(self.peak_at_full), 3 * ctx.train.noise())
        if rising and lag > self.lag_fraction * ramp:
            alert = self.fire(
                step,
                f"train/loss still rose from {fmt(self.peak_at_full)} to {fmt(level)} {lag} steps after the "
                f"curriculum reached full difficulty at step {self.full_step}: the model cannot follow the ramp",
                evidence := {
                    "at_full_difficulty": self.peak_at_full,
                    "now": level,
                    "full_difficulty_step": self.full_step,
                },
                R.for_alert(self.code, self.ctx, evidence, step),
            )
            if alert:
                return alert
        return None


class LossPlateau(Detector):
    """No real improvement for a long stretch while the LR is not tiny, after an initial drop,
    with the loss still stuck high (a converged run that has already made most of its drop is not
    a plateau).

    statistic: improvement = mean of the first quarter of the window P minus mean of its last quarter,
    P = max(min_rows rows, window_fraction * step, run_fraction * max_steps)
    fires when improvement + noise_multiple * its sd < min_drop_share * (initial - best)
    and < rate_share x the improvement over the window before (the descent has slowed to a stop),
    and the loss held its level across the whole window (the means of its four quarters within the
    same threshold + hold_noise_multiple x sd of each other: a spike or a rise inside the window is a
    change of level, not a plateau, and the span the message states must be true),
    (without an initial drop, against flat_share of the initial level instead: a loss at its chance
    level that an LR 1000x too low moves 1-3%), level > stuck_fraction * initial level,
    lr >= min_lr_fraction * peak lr, for confirm_rows rows. The episode ends only when the level
    improves again by more than twice the threshold plus twice its sd, so noise does not re-fire it.
    """

    code = "loss_plateau"
    title = "Loss plateau"
    cause = (
        "The model sits in a flat region: LR too small to leave it, or regularisation (weight decay, clipping) "
        "holding it there (report 001)."
    )
    min_rows = 50
    window_fraction = 0.25
    run_fraction = 0.1  # with a known max_steps, a "long stretch" is at least 10% of the run
    min_drop_share = 0.1
    rate_share = 0.25
    noise_multiple = 1.0
    hold_noise_multiple = 2.0  # looser than noise_multiple: 6 pairs of quarters, and a move must be shown
    stuck_fraction = 0.7
    flat_share = 0.02
    min_lr_fraction = 0.2
    confirm_rows = 5
    rearm_rows = 10
    thresholds = (
        "min_rows",
        "window_fraction",
        "run_fraction",
        "min_drop_share",
        "rate_share",
        "noise_multiple",
        "hold_noise_multiple",
        "stuck_fraction",
        "flat_share",
        "min_lr_fraction",
        "confirm_rows",
    )

    def healthy_reason(self) -> str:
        return f"train/loss kept improving, or had already fallen below {self.stuck_fraction:.0%} of its initial level"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.peak_lr = 0.0
        self.lr = None

    def observe(self, step, row):
        lr = row.get(rf.LR)
        if finite(lr):
            self.lr = lr
            self.peak_lr = max(self.peak_lr, lr)
        if not finite(row.get(rf.TRAIN_LOSS)):
            return None
        self.observed += 1
        ctx, track = self.ctx, self.ctx.train
        if track.count < self.min_rows or ctx.in_warmup(step) or ctx.ramping(step) or track.initial is None:
            return None
        spacing = (track.steps[-1] - track.steps[0]) / max(1, track.count - 1)
        window = max(self.min_rows * spacing, self.window_fraction * step, self.run_fraction * (ctx.max_steps or 0))
        then = track.level_at(step - window)
        if then is None or track.steps[0] > step - window:
            return None
        noise = track.noise()
        # improvement: mean of the window's first quarter minus mean of its last quarter, precise
        # on long windows (sd = noise * sqrt(1/m1 + 1/m2)).
        early, m1 = track.mean_between(step - window, step - 0.75 * window)
        late, m2 = track.mean_between(step - 0.25 * window, step)
        if early is None or late is None:
            return None
        improvement = early - late
        spread = noise * math.sqrt(1 / m1 + 1 / m2)
        dropped = track.initial - track.best > max(0.02 * abs(track.initial), 3 * noise)
        # The level, not the best: a loss that jumped and then held (report 003 after its spike) is
        # stuck at its new level whatever its best before the jump was.
        stuck = track.level > self.stuck_fraction * track.initial
        lr_ok = self.lr is None or self.peak_lr == 0 or self.lr >= self.min_lr_fraction * self.peak_lr
        # Flat must be shown, not just "not shown to improve": the improvement plus its noise must stay
        # under a tenth of the drop so far, so a short or noisy window never makes a plateau.
        # Without a drop to speak of (a loss at its chance level, a mean predictor's MSE), flat is
        # measured against the level itself: an LR 1000x too low moves the loss 1-3% and stops.
        threshold = (
            self.min_drop_share * (track.initial - track.best) if dropped else self.flat_share * abs(track.initial)
        )
        earlier_improvement = None
        if track.steps[0] <= step - 2 * window:
            a, _ = track.mean_between(step - 2 * window, step - 1.75 * window)
            b, _ = track.mean_between(step - 1.25 * window, step - window)
            if a is not None and b is not None:
                earlier_improvement = a - b
        # A slow but steady descent improves about as much per window as before; a plateau has
        # lost most of its earlier rate.
        slowed = (
            earlier_improvement is None
            or earlier_improvement <= threshold  # the window before was flat too
            or improvement < self.rate_share * earlier_improvement
        )
        flat = improvement + self.noise_multiple * spread < threshold and slowed
        if self.open and improvement - 2 * spread > 2 * threshold:
            self.open = False  # real progress: a later plateau is a new episode
        if flat:  # first quarter against last is not enough: the level must have held all along
            flat = self._held(step, window, (early, late), threshold + self.hold_noise_multiple * spread)
        if not (flat and stuck and lr_ok):
            self.streak = 0  # not note_healthy(): only real progress (above) ends a plateau episode
            return None
        self.streak += 1
        if self.streak < self.confirm_rows:
            return None
        if self.open:
            return None
        i = bisect_left(track.steps, step - window)
        since = track.steps[min(i, len(track.steps) - 1)]
        return self._alert(step, since, improvement, noise)

    def _held(self, step, window, ends, tolerance) -> bool:
        """The loss stayed at one level over the whole window: no two quarter means further apart than
        tolerance. First against last alone misses a loss that jumped (a spike, a resume at a higher
        LR) and then held: its window would reach back before the jump and count that time as flat."""
        middle = [self.ctx.train.mean_between(step - (k + 1) * window / 4, step - k * window / 4)[0] for k in (1, 2)]
        means = [*ends, *(m for m in middle if m is not None)]
        return max(means) - min(means) <= tolerance

    def _alert(self, step, since, improvement, noise):
        ctx, track = self.ctx, self.ctx.train
        return self.fire(
            step,
            f"train/loss has stayed at {fmt(track.level)} for {int(step - since)} steps (improved {fmt(improvement)} "
            f"since step {since}) after dropping from {fmt(track.initial)}, with lr {fmt(self.lr) if self.lr else 'n/a'}",
            evidence := {
                "level": track.level,
                "since_step": since,
                "improvement": improvement,
                "initial": track.initial,
                "lr": self.lr,
                "noise": noise,
            },
            R.for_alert(self.code, ctx, evidence, step),
        )
