"""What every detector shares: the alert record, the episode rule, robust statistics and the run
context (what the config declares: warm-up, schedule, curriculum).

A detector is a small object that describes itself: its code, title, likely cause, severity and
named thresholds are class attributes, and its healthy reason is built from those thresholds; the
registry (trainer/doctor/registry.py), the report and the codes table of docs/doctor.md derive
from them. It sees rows one at a time, in step order, online and offline alike, and keeps only
incremental state, so the live doctor and `python -m trainer diagnose` always agree.
"""

from __future__ import annotations

import math
import re
from collections import deque

from trainer.config import from_dict
from trainer.config.curriculum import curriculum_difficulty
from trainer.config.schedule import lr_at

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def median(values) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])


def mad_sigma(values, center: float | None = None) -> float:
    """Robust standard deviation: 1.4826 * median absolute deviation."""
    c = median(values) if center is None else center
    return MAD_TO_SIGMA * median([abs(v - c) for v in values])


MEAN_ABS_TO_SIGMA = 0.7979  # mean absolute deviation of a normal distribution / its sd (sqrt(2/pi))


def robust_scatter(values, mean_abs_floor: float) -> float:
    """Robust sd of values: the MAD's, floored at mean_abs_floor x the mean absolute deviation's
    (the MAD of a dozen values now and then reads a third of the true spread)."""
    center = median(values)
    mean_abs = sum(abs(v - center) for v in values) / len(values) / MEAN_ABS_TO_SIGMA
    return max(mad_sigma(values, center), mean_abs_floor * mean_abs)


def line_deviations(points: list[tuple[float, float]]) -> list[float]:
    """Each inner eval's distance from the straight line through its two neighbours, in units of
    the eval noise: for independent noise of sd s each has sd s, whatever the spacing, and a linear
    trend cancels out. Evenly spaced this is the second difference / sqrt(6); other programs evaluate
    at irregular steps (every epoch of a changing length, on a timer), where the second difference
    reads the trend itself as noise (issue 11)."""
    out = []
    for (s0, v0), (s1, v1), (s2, v2) in zip(points, points[1:], points[2:]):
        w = (s1 - s0) / (s2 - s0) if s2 > s0 else 0.5
        out.append((v1 - v0 - w * (v2 - v0)) / math.sqrt(1 + (1 - w) ** 2 + w**2))
    return out


def eval_noise(points: list[tuple[float, float]], mean_abs_floor: float) -> float:
    """Eval-to-eval noise (an sd) of (step, value) evals: the robust scatter of their line
    deviations, grown as Student's t would for a spread read from few of them (issue 11: 6-10 evals
    of a flat val with 2% noise read it at a third and raised overfitting)."""
    return deviation_noise(line_deviations(points), mean_abs_floor)


def deviation_noise(deviations: list[float], mean_abs_floor: float) -> float:
    """eval_noise from line deviations already taken (val_below_train takes them on two stretches)."""
    return robust_scatter(deviations, mean_abs_floor) * (1 + 2.5 / len(deviations))


def theil_sen_slope(points) -> float:
    """Median of the slopes between every pair of (x, y) points with different x (Theil 1950, Sen
    1968): a line's slope that up to 29% of outlying points cannot move. Quadratic in the points:
    callers pass a few dozen."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1]
    return median(slopes) if slopes else 0.0


_NUMBERS = (float, int)


def finite(value) -> bool:
    """A real number that is not NaN or Inf (bool is not a number here). Hot path: no isinstance."""
    return value.__class__ in _NUMBERS and value - value == 0


def make_alert(code, severity, step, message, evidence=None, remedy=None) -> dict:
    return {
        "code": code,
        "severity": severity,
        "step": int(step) if step is not None else None,
        "message": message,
        "evidence": evidence or {},
        "remedy": remedy or [],
    }


def headline(alert: dict) -> str:
    """What a terminal line or a banner puts before an alert's message: "<code> at step N", or the
    code alone where the message already says "at step N" (most do: "... ratio 1:93503 at step 3700"
    read twice in a row)."""
    code, step = alert.get("code", "unknown"), alert.get("step")
    if step is None or re.search(rf"\bat step {step}\b", str(alert.get("message", ""))):
        return str(code)
    return f"{code} at step {step}"


def fmt(value: float) -> str:
    """Numbers in messages: 4 significant digits, no scientific notation for ordinary values."""
    if value is None:
        return "null"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3g}"


class Detector:
    """One failure code. Subclasses set `code`, `title`, `cause`, `severity`, `rearm_rows` and
    `thresholds` (the names of the class attributes that decide when it fires, each stated in the
    codes table of docs/doctor.md), and implement observe and healthy_reason.

    Episode rule: `self.fire(...)` returns an alert only when no episode is open; `self.clear()`
    counts healthy observations and closes the episode after `rearm_rows` of them, so a condition
    that persists is reported once, and one that recovers and comes back is reported again.

    Evidence rule: most codes need their condition on several observations in a row;
    `self.confirmed(condition, rows)` counts them in `self.streak`.
    """

    code = ""
    title = ""  # the finding's heading in the report
    cause = ""  # the likely causes, one or two sentences for the report
    severity = "warning"
    kind = "metrics"  # which records it reads: metrics | grads | samples
    rearm_rows = 5
    thresholds: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.code:  # a shared base (gradients._GradLevel), not a detector
            return
        missing = [name for name in ("title", "cause") if not getattr(cls, name)]
        missing += [name for name in cls.thresholds if not isinstance(getattr(cls, name, None), (int, float))]
        if missing:
            raise TypeError(
                f"detector {cls.__name__} ({cls.code}) lacks {', '.join(missing)}: set each as a class "
                "attribute (thresholds name numeric class attributes); see docs/doctor.md, Adding a detector"
            )

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.open = False
        self._clear_count = 0
        self.fired = 0
        self.observed = 0  # records that carried this detector's series (for the "checked" list)
        self.streak = 0  # observations in a row on which the condition held (see confirmed)

    def observe(self, step: int, record: dict) -> dict | None:
        raise NotImplementedError

    def fire(self, step, message, evidence, remedy=None, severity=None) -> dict | None:
        self._clear_count = 0
        if self.open:
            return None
        self.open = True
        self.fired += 1
        return make_alert(self.code, severity or self.severity, step, message, evidence, remedy)

    def clear(self) -> None:
        if self.open:
            self._clear_count += 1
            if self._clear_count >= self.rearm_rows:
                self.open = False
                self._clear_count = 0

    def note_healthy(self) -> None:
        """A healthy observation: the streak starts over and the open episode moves towards its end."""
        self.streak = 0
        self.clear()

    def confirmed(self, condition: bool, rows: int) -> bool:
        """True once condition has held on `rows` observations in a row; one where it does not hold
        is healthy (note_healthy), so a single noisy observation never makes an alert."""
        if not condition:
            self.note_healthy()
            return False
        self.streak += 1
        return self.streak >= rows

    def healthy_reason(self) -> str:
        """One line saying what held, built from the thresholds so it cannot drift from them."""
        raise NotImplementedError

    def checked(self) -> str | None:
        """Why this code was found healthy (None when there was nothing to check)."""
        return self.healthy_reason() if self.observed else None


class RollingWindow:
    """The last `size` finite values with their median and robust spread."""

    def __init__(self, size: int):
        self.values: deque = deque(maxlen=size)

    def add(self, value: float) -> None:
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def median(self) -> float:
        return median(self.values)


class RunContext:
    """What the config declares about the run, with safe answers when there is no config.

    config is the resolved config dict (config.yaml or Config.to_dict()); a config from another
    program that our schema refuses still gives whatever plain keys it has. schema=False says the
    config is not our trainer's even if it happens to validate (a script's own dict through
    trainer.init, e.g. {"lr": 0.01}, would otherwise be read as our default warm-up and schedule).
    trainer_wrote=False says our trainer did not write the run (a script through trainer.init, an
    import, a directory without status.json): its LR is judged by itself, never against a schedule
    formula of ours (declared_schedule is None).
    """

    def __init__(self, config: dict | None, schema: bool = True, trainer_wrote: bool = True):
        self.raw = dict(config or {})
        self.cfg = None
        if config and schema:
            try:
                self.cfg = from_dict(self.raw)
            except Exception:  # another program's config: use what we can read
                self.cfg = None
        self.warmup_steps = int(self._get("warmup_steps", 0) or 0)
        self.max_steps = self._get("max_steps", None)
        self.peak_lr = self._get("lr", None)
        curriculum = self.raw.get("curriculum") or {}
        self.curriculum_ramp = curriculum.get("ramp", "none") if isinstance(curriculum, dict) else "none"
        self.preschool_steps = int((curriculum or {}).get("preschool_steps", 0) or 0) if self.curriculum_ramp else 0
        self.has_curriculum = self.curriculum_ramp not in (None, "none")
        self.difficulty = None  # latest logged curriculum/difficulty
        self.difficulty_history: list[tuple[int, float]] = []
        self.rows = 0  # metrics rows seen (train rows)
        self.change_step = 0  # last resume/fork/config change: the schedule is checked from here
        # A schedule is declared only by our trainer's config with an explicit `schedule` key: a
        # config without one would otherwise be read as our default warmup_cosine (issue 11).
        declared = trainer_wrote and self.cfg is not None and "schedule" in self.raw
        self.declared_schedule = self.cfg.schedule if declared else None

    def _get(self, key, default):
        if self.cfg is not None:
            return getattr(self.cfg, key)
        value = self.raw.get(key, default)
        return value if finite(value) else default

    def in_warmup(self, step: int) -> bool:
        return step < self.warmup_steps

    def expected_lr(self, step: int) -> float | None:
        """The declared schedule's LR at step; None when the run declares none."""
        if self.declared_schedule is None:
            return None
        return lr_at(max(0, step), self.cfg)

    def planned_difficulty(self, step: int) -> float | None:
        if self.cfg is None or not self.has_curriculum:
            return None
        return curriculum_difficulty(step, self.cfg.curriculum)

    def note_difficulty(self, step: int, value: float) -> None:
        self.difficulty = value
        self.difficulty_history.append((step, value))
        if not self.has_curriculum:
            self.has_curriculum = True  # another program's run: the logged difficulty declares it

    def difficulty_at(self, step: int) -> float | None:
        """Logged difficulty at step (latest logged at or before it), else the planned one."""
        hist = self.difficulty_history
        if hist:
            lo, hi = 0, len(hist)
            while lo < hi:
                mid = (lo + hi) // 2
                if hist[mid][0] <= step:
                    lo = mid + 1
                else:
                    hi = mid
            return hist[lo - 1][1] if lo else hist[0][1]
        return self.planned_difficulty(step)

    def ramping(self, step: int) -> bool:
        """True while a declared curriculum is still raising the difficulty."""
        if not self.has_curriculum:
            return False
        d = self.difficulty_at(step)
        return d is not None and d < 0.999
