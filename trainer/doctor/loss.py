"""Detectors on the level of the training loss: loss_spike, loss_rising (loss_plateau is in
trainer/doctor/plateau.py).

They read train/loss from metrics rows; the shared smoothed view of train/loss is ctx.train
(trainer/doctor/tracks.py), updated before they run. non_finite is in trainer/doctor/nonfinite.py.
"""

from __future__ import annotations

import math
from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, mad_sigma, make_alert, median, theil_sen_slope
from trainer.rundir import run_format as rf

MEAN_ABS_TO_SIGMA = 0.7979  # mean absolute deviation of a normal distribution / its sd (sqrt(2/pi))


class LossSpike(Detector):
    """A jump far above the recent level, judged on first differences so a trend is not a spike.

    statistic: jump = train/loss - median(previous 3 values)
    fires when jump > z_threshold * robust sd of the previous `window` differences (+ their median;
    the sd is the MAD's, floored at mean_abs_floor x what their mean absolute second difference implies)
    and jump > min_relative_jump * |previous level|, after warm-up and `min_rows` rows,
    and jump > min_start_fraction * |level of the first 3 rows|: a loss that has converged near zero
    (an MSE at 1e-5 after starting at 0.5) jumps tenfold between batches, a move too small against
    what training achieved to act on. Where the loss is positive, the jump must also be z_threshold
    robust sd out on a log scale (log(value / level) against the previous differences of log loss):
    near convergence batch noise is multiplicative (an MSE moving between 2e-6 and 2e-5 from row to
    row), and a tenfold batch is then its usual spread, not a break from it.
    """

    code = "loss_spike"
    title = "Loss spike"
    cause = "A noisy gradient (small batch, long blocks) met a large step; report 003 saw 6.65 to 9.58."
    window = 32
    min_rows = 16
    z_threshold = 6.0
    min_relative_jump = 0.15
    min_start_fraction = 0.01
    mean_abs_floor = 0.8
    rearm_rows = 5
    thresholds = ("window", "min_rows", "z_threshold", "min_relative_jump", "min_start_fraction", "mean_abs_floor")

    def healthy_reason(self) -> str:
        return (
            f"no train/loss jump above {self.z_threshold:g} robust sd "
            f"and {self.min_relative_jump:.0%} of the recent level"
        )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.previous: deque = deque(maxlen=3)
        self.diffs: deque = deque(maxlen=self.window)
        self.log_diffs: deque = deque(maxlen=self.window)

    def observe(self, step, row):
        value = row.get(rf.TRAIN_LOSS)
        if not finite(value):
            return None
        self.observed += 1
        start = self.ctx.train.start()  # None before 3 rows: no jump is judged that early anyway
        floor = self.min_start_fraction * abs(start) if start is not None else 0.0
        alert = None
        if self.previous:
            level = median(self.previous)
            jump = value - level
            big_enough = jump > self.min_relative_jump * abs(level) and jump > floor  # cheap tests first
            if big_enough and len(self.diffs) >= self.min_rows and not self.ctx.in_warmup(step):
                center = median(self.diffs)
                sd = max(mad_sigma(self.diffs, center), 1e-3 * abs(level), 1e-12)
                if (jump - center) / sd > self.z_threshold:  # the floor can only lower z: only then
                    sd = max(sd, self._spread_floor(self.diffs))
                z = (jump - center) / sd
                if z > self.z_threshold and self._beyond_log_spread(value, level):
                    alert = self._alert(step, value, level, z)
                else:
                    self.clear()
            else:
                self.clear()
            self.diffs.append(value - self.previous[-1])
            if value > 0 and self.previous[-1] > 0:
                self.log_diffs.append(math.log(value / self.previous[-1]))
        self.previous.append(value)
        return alert

    def _spread_floor(self, diffs) -> float:
        """The floor of the differences' robust sd (their MAD's): mean_abs_floor x the sd that their
        mean absolute second difference implies (for independent noise a second difference has sqrt 3
        times a first difference's sd). The MAD of 32 differences now and then reads 0.6-0.8 of their
        spread, and a batch 4-5 sd out then passed for a spike (3 healthy runs logged every step on the
        second generator's dev block); the mean absolute deviation is 88% efficient, and taken on
        second differences the bend of a loss still falling fast does not pass for noise."""
        d = list(diffs)
        second = [b - a for a, b in zip(d, d[1:])]
        center = median(second)
        mean_abs = sum(abs(x - center) for x in second) / len(second) / MEAN_ABS_TO_SIGMA / math.sqrt(3)
        return self.mean_abs_floor * mean_abs

    def _beyond_log_spread(self, value, level) -> bool:
        """The jump is also out of the run's multiplicative spread (True where there is no log scale:
        a loss that is not positive, or too few positive rows)."""
        if level <= 0 or len(self.log_diffs) < self.min_rows:
            return True
        center = median(self.log_diffs)
        sd = max(mad_sigma(self.log_diffs, center), self._spread_floor(self.log_diffs), 1e-3)
        return (math.log(value / level) - center) / sd > self.z_threshold

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
    `confirm_rows` consecutive rows, after warm-up and `min_rows` rows, and the rise gives back more
    than min_progress_share of what training had gained (start - best): a converged loss at 1e-6
    that bounces 14x, on a run that started at 0.3, has given back 0.01% of it. Also fires, with no trend
    test, when the level stays above divergence_factor x the median of the first 3 rows, and before
    the rise test is armed (from early_rows rows on, warm-up included) above divergence_factor x the
    first logged value and divergence_z x the per-row log noise: a loss that blew up before the
    detector armed (LR 1 with no warm-up: 4 to 61 in 8 rows, then flat at ~18) never shows a best
    below its new level, nor a trend after it.
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
    early_rows = 5
    min_relative_rise = 0.15
    min_progress_share = 0.01
    divergence_factor = 2.0
    divergence_z = 4.0
    noise_multiple = 3.0
    confirm_rows = 5
    max_pace_ratio = 2.0  # an exponential ramp peaks at 5x its average pace, a linear one at 1x
    pace_span_rows = 3
    lag_fraction = 0.2
    trend_points = 24
    trend_z = 3.0
    rearm_rows = 10
    thresholds = (
        "min_rows",
        "min_rows_curriculum",
        "min_relative_rise",
        "min_progress_share",
        "divergence_factor",
        "divergence_z",
        "early_rows",
        "noise_multiple",
        "confirm_rows",
        "trend_points",
        "trend_z",
    )

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
        first = track.first[0]
        # Before the rise test is armed (from early_rows on, in the warm-up too): blown up from the
        # start, the level (median of the last rows) above divergence_factor x the first logged
        # value and out of the rows' noise. An LR the model cannot hold blows the loss up in the
        # first steps (an HF GPT-2 at LR 1, no warm-up: 12.8 at step 2, 59 at step 8, still 2-3x its
        # first value at step 20), when the median of the first 3 rows already holds the blow-up.
        armed = (
            track.count >= self.min_rows_curriculum
            if ctx.has_curriculum
            else track.count >= self.min_rows and not ctx.in_warmup(step)
        )
        if not armed:
            blew_up = (
                not ctx.has_curriculum
                and first > 0
                and track.level > self.divergence_factor * first
                and self._beyond_first_rows_noise(track.level, first)
            )
            if track.count >= self.early_rows and self.confirmed(blew_up, self.confirm_rows):
                return self._diverged(step, track.level, first, early=True)
            return None
        level = track.level
        if self.best is None or level < self.best:
            self.best, self.best_step = level, step
        if ctx.has_curriculum:
            lagging = self._lagging(step, level)
            if lagging:
                return lagging
        threshold = max(self.min_relative_rise * abs(self.best), self.noise_multiple * track.noise())
        start = track.start()  # armed: against the first 3 rows, which one low draw cannot move
        # Relative to the best alone, a loss near zero rises "15%" on float noise: an MLP fitted to a
        # noiseless sin(3x) bounced from 1.85e-06 to 2.63e-05 (benchmarks/api_overhead.py, width 384)
        # after starting at ~0.3, and an engineer would not look twice. A rise counts when it gives
        # back a share of what training gained; without gains to measure (a run that started where
        # it is) the rule stands as it was.
        gained = start - self.best if start is not None else 0.0
        threshold = max(threshold, self.min_progress_share * gained)
        rising = level - self.best > threshold
        diverged = not ctx.has_curriculum and start > 0 and level > self.divergence_factor * start
        # The trend on each of the confirm_rows rows, not on one: a 44k-step plain loop
        # (examples/plain_loop.py, diagnosed from every 5th row) held its level 15% over its lowest
        # median for 20 rows in all, and on one of them 17 points happened to line up (1.7x over
        # 249 steps, 0.17 log scatter) on a loss whose 100-step medians stayed within 0.0029-0.0033.
        trending = rising and (ctx.has_curriculum or self._trending(step))
        # An open episode's level that has not come back within min_relative_rise of the best is still
        # up, whatever the noise test says: the noise is measured at the new level, and a loss that
        # stepped up from 1.7e-06 to 0.03 with 30% noise a row read as within 3 x noise of its best 6
        # rows after the warning, closed the episode, and was warned of again 47 rows later.
        still_up = self.open and level - self.best > self.min_relative_rise * abs(self.best)
        if (rising or still_up) and not trending and not diverged:
            # Not healthy either: the level is still up, only its trend is not shown on this row. As
            # a healthy row it moved the open episode towards its end, and the same rise from the same
            # best was reported again 225 steps later (examples/plain_loop.py --lr 0.5).
            self.streak = 0
            return None
        if not self.confirmed(trending or diverged, self.confirm_rows):
            return None
        if diverged and not trending:
            return self._diverged(step, level, start)
        return self._rising(step, level)

    def _beyond_first_rows_noise(self, level, first) -> bool:
        """log(level / first) above divergence_z x the per-row noise on a log scale (the robust sd of
        the rows' log differences / sqrt 2): on a loss with 50% noise per row the first value can be
        a low draw at half the level (second generator, `noisy` seed 78: 0.37 then 0.49-1.2), which is
        not a blow-up; the HF run at LR 1 rose 2.9x against 0.14 of per-row log noise."""
        log_diffs = self.ctx.train.log_diffs
        if len(log_diffs) < 4:
            return False
        return math.log(level / first) > self.divergence_z * self.ctx.train.log_noise()

    def _diverged(self, step, level, start, early=False):
        start_step = self.ctx.train.steps[0]
        evidence = {"best": start, "best_step": start_step, "now": level, "times_start": round(level / start, 2)}
        if early:  # before the rise test armed: a blow-up in the first rows, at the start's LR
            evidence["rows_logged"] = self.ctx.train.count
        return self.fire(
            step,
            f"train/loss rose from {fmt(start)} (step {start_step}) to {fmt(level)} at step {step}, "
            f"{level / start:.1f}x where training started, and stays there: it diverged",
            evidence,
            R.for_alert(self.code, self.ctx, evidence, step),
        )

    def _trending(self, step) -> bool:
        """The Theil-Sen line through the rows since the best level (at most trend_points of them,
        evenly spaced) has risen more than trend_z x its own noise (the larger of the rows' scatter
        about the line and the per-row noise, x sqrt(12 / points), with Student's allowance for few
        points). The level against the best alone compares a fresh median with the lowest of
        hundreds of them: on a loss with 10-50% noise per row (a small batch logged every step) it
        cleared 3 x noise now and then with no trend at all (issue 11: 12 of 200 healthy `noisy`
        and `log_every_step` runs of the second generator's dev block)."""
        points = self.ctx.train.points_since(self.best_step - 1, self.trend_points)
        n = len(points)
        slope = theil_sen_slope(points)
        noise = max(mad_sigma([v - slope * s for s, v in points]), self.ctx.train.noise())
        z = self.trend_z * (1 + 2.5 / n)
        return slope * (step - self.best_step) > z * noise * (12 / n) ** 0.5

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
