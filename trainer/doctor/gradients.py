"""Detectors on gradients: dead_parameters (grads.jsonl) and exploding_gradients /
vanishing_gradients (grad/norm in metrics rows, judged against the run's own running level)."""

from __future__ import annotations

import math
from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, mad_sigma, median
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
    """grad/norm far above its own running level.

    statistic: log(grad/norm) against the median of the previous `window` logs (robust z on MAD)
    fires when grad/norm > min_factor x the running median and robust z > z_threshold.
    """

    code = "exploding_gradients"
    title = "Exploding gradients"
    cause = "An unstable step: LR too high for the gradient noise, or no clipping."
    min_factor = 10.0
    z_threshold = 6.0
    refresh_rows = 5
    rearm_rows = 5
    thresholds = ("window", "min_rows", "min_factor", "z_threshold", "refresh_rows")

    def healthy_reason(self) -> str:
        return f"grad/norm stayed within {self.min_factor:g}x of its running median"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._center = None

    def observe(self, step, row):
        g = self._value(step, row)
        if g is None:
            return None
        logg = math.log(max(g, 1e-30))
        alert = None
        if len(self.logs) >= self.min_rows:
            if self._center is None or len(self.logs) % self.refresh_rows == 0:
                self._center = median(self.logs)  # the running level moves slowly: refresh every few rows
            center = self._center
            level = math.exp(center)
            z = 0.0
            if g > self.min_factor * level:  # cheap test first; the spread only when it passes
                z = (logg - center) / max(mad_sigma(self.logs, center), 0.05)
            if z > self.z_threshold:
                alert = self.fire(
                    step,
                    f"grad/norm jumped to {fmt(g)}, {g / level:.0f}x its running median {fmt(level)}, at step {step}",
                    evidence := {
                        "grad_norm": g,
                        "running_median": level,
                        "factor": round(g / level, 1),
                        "robust_z": round(z, 1),
                    },
                    R.for_alert(self.code, self.ctx, evidence, step),
                )
            elif g < 3 * level:
                self.clear()
            if self.open:
                return alert  # keep the explosion out of the baseline while it lasts
        self.logs.append(logg)
        return alert


class VanishingGradients(_GradLevel):
    """grad/norm far below its own established level, or below an absolute floor.

    statistic: median grad/norm of the last `recent_rows` rows against the highest running median
    seen after warm-up. fires when it is < 1/min_factor of that level (or < absolute_floor) for
    confirm_rows rows.
    """

    code = "vanishing_gradients"
    title = "Vanishing gradients"
    cause = "Updates have become too small to move the weights: LR decayed or activations shrank."
    min_factor = 100.0
    absolute_floor = 1e-7
    recent_rows = 10
    confirm_rows = 5
    rearm_rows = 5
    thresholds = ("window", "min_rows", "min_factor", "absolute_floor", "recent_rows", "confirm_rows")

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
        vanished = now < self.level / self.min_factor or now < self.absolute_floor
        if not self.confirmed(vanished, self.confirm_rows):
            return None
        return self.fire(
            step,
            f"grad/norm fell to {fmt(now)}, {self.level / max(now, 1e-30):.0f}x below its established level "
            f"{fmt(self.level)}, at step {step}",
            evidence := {"grad_norm": now, "established_level": self.level},
            R.for_alert(self.code, self.ctx, evidence, step),
        )
