"""Detectors on gradients: dead_parameters (grads.jsonl) and exploding_gradients /
vanishing_gradients (grad/norm in metrics rows, judged against the run's own running level)."""

from __future__ import annotations

import math
from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, mad_sigma, median, theil_sen_slope
from trainer.rundir import run_format as rf


class DeadParameters(Detector):
    """Parameters whose gradient norm is exactly zero at every probe step (report 001's dead
    celestial projections).

    statistic: per parameter, consecutive probe records with norm == 0
    fires when some parameters reach min_probes zero probes in a row; names them.
    """

    code = "dead_parameters"
    title = "Dead parameters (zero gradients)"
    cause = "Parts of the model get no gradient: not on the forward path, masked, or saturated."
    kind = "grads"
    min_probes = 3
    rearm_rows = 3
    thresholds = ("min_probes",)

    def healthy_reason(self) -> str:
        return f"no parameter had a gradient of exactly 0 at {self.min_probes} probe steps in a row"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.zero_streak: dict[str, int] = {}
        self.total = 0

    def observe(self, step, record):
        norms = record.get("norms")
        if not isinstance(norms, dict) or not norms:
            return None
        self.observed += 1
        self.total = len(norms)
        for name, value in norms.items():
            self.zero_streak[name] = self.zero_streak.get(name, 0) + 1 if value == 0 else 0
        dead = sorted(n for n, k in self.zero_streak.items() if k >= self.min_probes and norms.get(n, 1) == 0)
        if not dead:
            self.clear()
            return None
        shown = ", ".join(dead[:5]) + (f" and {len(dead) - 5} more" if len(dead) > 5 else "")
        return self.fire(
            step,
            f"{len(dead)} of {self.total} parameters had a gradient norm of exactly 0 at the last "
            f"{self.min_probes}+ probe steps: {shown}",
            evidence := {"dead": dead, "count": len(dead), "total": self.total, "probes": self.min_probes},
            R.for_alert(self.code, self.ctx, evidence, step),
        )


class _GradLevel(Detector):
    """Shared: a running window of log grad/norm after warm-up."""

    window = 50
    min_rows = 20

    def __init__(self, ctx):
        super().__init__(ctx)
        self.logs: deque = deque(maxlen=self.window)

    def _value(self, step, row):
        g = row.get(rf.GRAD_NORM)
        if not finite(g) or g < 0:
            return None
        self.observed += 1
        if self.ctx.in_warmup(step):
            return None
        return g


class ExplodingGradients(_GradLevel):
    """grad/norm far above its own running level, suddenly or by a steady climb.

    statistic (jump): log(grad/norm) against the median of the previous `window` logs (robust z on MAD)
    fires when grad/norm > min_factor x the running median and robust z > z_threshold on jump_rows
    rows in a row: one batch with a huge gradient, which clipping absorbs and after which the norm
    is back (a small batch's hard example: 25x on a healthy `noisy` run of the second generator),
    is not an explosion; one that holds is.
    statistic (climb): the level (median of the last level_rows grad/norms) against the lowest
    running median (of `window` rows, refreshed every refresh_rows rows) since arming
    fires when the level is climb_factor x above that low, and climb_z sd of the level beyond that
    (_level_margin), for climb_confirm rows in a row while the
    Theil-Sen line through the last `window` log grad/norms still rises. A steady climb drags the
    jump rule's running median along with it (10x over 15% of a run raised nothing, issue 11); its
    lowest value does not move, and a median of several rows is not moved by single spikes.
    """

    code = "exploding_gradients"
    title = "Exploding gradients"
    cause = "An unstable step: LR too high for the gradient noise, or no clipping."
    min_factor = 10.0
    z_threshold = 6.0
    refresh_rows = 5
    climb_factor = 4.0
    level_rows = 7
    climb_confirm = 3
    climb_z = 3.0
    jump_rows = 2
    rearm_rows = 5
    thresholds = (
        "window",
        "min_rows",
        "min_factor",
        "z_threshold",
        "jump_rows",
        "climb_z",
        "refresh_rows",
        "climb_factor",
        "level_rows",
        "climb_confirm",
    )

    def healthy_reason(self) -> str:
        return (
            f"grad/norm stayed within {self.min_factor:g}x of its running median and did not climb "
            f"{self.climb_factor:g}x above its lowest level"
        )

    def __init__(self, ctx):
        super().__init__(ctx)
        self._center = None
        self.recent: deque = deque(maxlen=self.level_rows)
        self.steps: deque = deque(maxlen=self.window)  # the steps of self.logs, for the slope
        self.low = None  # (lowest running median of log grad/norm, its step)
        self.jump_seen = 0  # rows in a row that passed the jump test

    def observe(self, step, row):
        g = self._value(step, row)
        if g is None:
            return None
        logg = math.log(max(g, 1e-30))
        self.recent.append(logg)
        alert = None
        if len(self.logs) >= self.min_rows:
            if self._center is None or len(self.logs) % self.refresh_rows == 0:
                self._center = median(self.logs)  # the running level moves slowly: refresh every few rows
                if not self.open and (self.low is None or self._center < self.low[0]):
                    self.low = (self._center, step)
            alert = self._jump(step, g, logg) or self._climb(step)
            if self._calm(g):
                self.clear()  # one episode per explosion or climb: it ends after rearm_rows calm rows
            if self.open:
                return alert  # keep the explosion out of the baseline while it lasts
        self.logs.append(logg)
        self.steps.append(step)
        return alert

    def _jump(self, step, g, logg):
        center = self._center
        level = math.exp(center)
        z = 0.0
        if g > self.min_factor * level:  # cheap test first; the spread only when it passes
            z = (logg - center) / max(mad_sigma(self.logs, center), 0.05)
        self.jump_seen = self.jump_seen + 1 if z > self.z_threshold else 0
        if self.jump_seen >= self.jump_rows:
            return self._fire(
                step,
                f"grad/norm jumped to {fmt(g)}, {g / level:.0f}x its running median {fmt(level)}, at step {step}",
                {"grad_norm": g, "running_median": level, "factor": round(g / level, 1), "robust_z": round(z, 1)},
            )
        return None

    def _calm(self, g) -> bool:
        """Neither rule's condition holds, with a margin: grad/norm under 3x the running median, and the
        level under the square root of the climb's factor (a level at the threshold would re-arm on noise)."""
        return g < 3 * math.exp(self._center) and median(self.recent) - self.low[0] < 0.5 * math.log(self.climb_factor)

    def _level_margin(self) -> float:
        """climb_z sd of the level, a median of level_rows rows (1.2533 sd / sqrt(rows) for normal noise),
        from the per-row noise of log grad/norm (MAD of first differences / sqrt 2, which a climb does
        not inflate); computed only once the level is climb_factor above the low. On a healthy run with
        log-noise 0.3-0.6 (a small batch) that drifts up 1-2.5x late, as the LR decays, a median of 7
        rows and a low taken as the least of many running medians sat 4x apart (3 `noisy` runs of the
        second generator's dev block)."""
        if len(self.logs) < self.min_rows:
            return 0.0
        logs = list(self.logs)
        noise = mad_sigma([b - a for a, b in zip(logs, logs[1:])]) / math.sqrt(2)
        return self.climb_z * 1.2533 * noise / math.sqrt(self.level_rows)

    def _climb(self, step):
        level = median(self.recent)
        low, low_step = self.low
        slope = 0.0
        excess = level - low - math.log(self.climb_factor)
        if excess >= 0 and excess >= self._level_margin():  # a healthy row pays one median of 7
            slope = theil_sen_slope(list(zip(self.steps, self.logs))[-2 * self.level_rows :])
        self.streak = self.streak + 1 if slope > 0 else 0
        if self.streak < self.climb_confirm:
            return None
        factor = math.exp(level - low)
        per_1000 = math.exp(slope * 1000)
        return self._fire(
            step,
            f"grad/norm climbed to {fmt(math.exp(level))} (median of the last {self.level_rows} rows), {factor:.0f}x "
            f"its lowest running median {fmt(math.exp(low))} at step {low_step}, and still rises "
            f"({per_1000:.3g}x per 1000 steps), at step {step}",
            {
                "grad_norm": math.exp(level),
                "low": math.exp(low),
                "low_step": low_step,
                "factor": round(factor, 1),
                "factor_per_1000_steps": round(per_1000, 3),
            },
        )

    def _fire(self, step, message, evidence):
        return self.fire(step, message, evidence, R.for_alert(self.code, self.ctx, evidence, step))


class VanishingGradients(_GradLevel):
    """grad/norm far below its own established level, or below an absolute floor.

    statistic: median grad/norm of the last `recent_rows` rows against the highest running median
    seen after warm-up. fires when it is < 1/min_factor of that level (or < absolute_floor) for
    confirm_rows rows, or at once when each of the last fast_rows rows is under 1/min_factor of it
    (a sudden fall: the median of recent_rows rows moves only half a window after it).
    """

    code = "vanishing_gradients"
    title = "Vanishing gradients"
    cause = "Updates have become too small to move the weights: LR decayed or activations shrank."
    min_factor = 100.0
    absolute_floor = 1e-7
    recent_rows = 10
    confirm_rows = 5
    fast_rows = 3
    rearm_rows = 5
    thresholds = ("window", "min_rows", "min_factor", "absolute_floor", "recent_rows", "confirm_rows", "fast_rows")

    def healthy_reason(self) -> str:
        return f"grad/norm stayed above 1/{self.min_factor:g} of its established level"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.recent: deque = deque(maxlen=self.recent_rows)
        self.level = None

    def observe(self, step, row):
        g = self._value(step, row)
        if g is None:
            return None
        self.recent.append(g)
        self.logs.append(g)
        if len(self.logs) < self.min_rows:
            return None
        now = median(self.recent)
        if self.level is None or self.observed % self.recent_rows == 0:
            self.level = max(self.level or 0.0, median(self.logs))
        floor = self.level / self.min_factor
        vanished = now < floor or now < self.absolute_floor
        # all of the last fast_rows rows that far down: a fall of 100x is 7 sd of the noisiest grad/norm
        # of one step (log sd 0.6), so three rows in a row are conclusive before the median of 10 moves
        fast = g < floor and max(self.recent[-i] for i in range(1, self.fast_rows + 1)) < floor
        if not self.confirmed(vanished or fast, self.confirm_rows) and not fast:
            return None
        return self.fire(
            step,
            f"grad/norm fell to {fmt(now)}, {self.level / max(now, 1e-30):.0f}x below its established level "
            f"{fmt(self.level)}, at step {step}",
            evidence := {"grad_norm": now, "established_level": self.level},
            R.for_alert(self.code, self.ctx, evidence, step),
        )
