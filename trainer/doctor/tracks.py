"""Smoothed views of a loss series, computed once per row and shared by the loss detectors.

A LossTrack keeps: the running median of the last `smooth_rows` values (the level), the robust
per-row noise (MAD of first differences / sqrt 2, which a trend does not inflate), the level's
history by step, the initial level (the first row, smoothed by Tukey's end-point rule) and the best
level so far.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque

from trainer.doctor.base import MAD_TO_SIGMA, mad_sigma, median


class LossTrack:
    smooth_rows = 11  # median window of the level
    noise_rows = 32  # window of first differences for the noise estimate

    def __init__(self):
        self.recent: deque = deque(maxlen=self.smooth_rows)
        self.diffs: deque = deque(maxlen=self.noise_rows)
        self.log_diffs: deque = deque(maxlen=self.noise_rows)  # of a positive loss: its multiplicative noise
        self.last: float | None = None
        self.level: float | None = None
        self.steps: list[int] = []
        self.levels: list[float] = []
        self.sums: list[float] = [0.0]  # prefix sums of the raw values: window means in O(1)
        self.initial: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.count = 0
        self.first: list[float] = []  # the first 4 raw values, for the initial level
        self._noise = (-1, 0.0)  # (count it was computed at, value): several detectors ask per row

    def add(self, step: int, value: float) -> None:
        if self.last is not None:
            self.diffs.append(value - self.last)
            if value > 0 and self.last > 0:
                self.log_diffs.append(math.log(value / self.last))
        self.last = value
        self.recent.append(value)
        self.count += 1
        self.level = median(self.recent)
        self.steps.append(step)
        self.levels.append(self.level)
        self.sums.append(self.sums[-1] + value)
        if self.count <= 4:
            self.first.append(value)
            if self.count == 4:
                self.initial = self._initial()
        if self.count >= 5 and (self.best is None or self.level < self.best):
            self.best, self.best_step = self.level, step

    def start(self) -> float | None:
        """The plain median of the first 3 raw values (None before 3): where training started, for
        rules that compare against it as it was logged (loss_spike's floor, loss_rising's divergence
        once armed; before that, loss_rising reads the first value, as a blow-up in the first rows is
        in this median)."""
        return median(self.first[:3]) if self.count >= 3 else None

    def _initial(self) -> float:
        """The loss before most of the drop: the running median of 3 at the first row, by Tukey's
        end-point rule, median(x1, z2, 3 z2 - 2 z3) (z = running medians of 3; Tukey 1977, as R's
        stats::smoothEnds).

        The plain median of the first 3 rows is the value at row 2 when the loss falls fast against
        the log interval: a run logged every 20 steps that fell 4.2 -> 3.7 -> 3.2 -> 3.0 read 3.21, so
        its converged 1.62 looked like "still above half the initial loss" and healthy_fast seed 108
        was called a plateau. The end-point rule extrapolates the trend of z2, z3 back to row 1 and
        still ignores a lone outlier in x1 (the median of the three).
        """
        x = self.first
        z2, z3 = median(x[:3]), median(x[1:4])
        return median([x[0], z2, 3 * z2 - 2 * z3])

    def noise(self) -> float:
        """Per-row noise (robust standard deviation); 0 until there are 8 differences."""
        if self._noise[0] == self.count:
            return self._noise[1]
        value = 0.0
        if len(self.diffs) >= 8:
            d = list(self.diffs)
            center = median(d)
            value = MAD_TO_SIGMA * median([abs(x - center) for x in d]) / 1.4142
        self._noise = (self.count, value)
        return value

    def log_noise(self) -> float:
        """Per-row noise of a positive loss on a log scale (robust sd of the last log differences /
        sqrt 2; 0 before the first); callers decide how many differences they need."""
        return mad_sigma(self.log_diffs) / math.sqrt(2) if self.log_diffs else 0.0

    def mean_between(self, first_step: float, last_step: float) -> tuple[float | None, int]:
        """(mean of the raw values logged in [first_step, last_step], how many there were)."""
        i = bisect_left(self.steps, first_step)
        j = bisect_right(self.steps, last_step)
        if j <= i:
            return None, 0
        return (self.sums[j] - self.sums[i]) / (j - i), j - i

    def points_since(self, step: float, at_most: int) -> list[tuple[int, float]]:
        """The raw (step, value) rows logged after step, at most at_most of them, evenly spaced
        (each value read back from the prefix sums, so nothing more is kept per row)."""
        i = bisect_right(self.steps, step)
        stride = max(1, -(-(len(self.steps) - i) // at_most))
        return [(self.steps[k], self.sums[k + 1] - self.sums[k]) for k in range(i, len(self.steps), stride)]

    def level_at(self, step: int) -> float | None:
        """The level logged at the last row at or before step."""
        i = bisect_right(self.steps, step)
        return self.levels[i - 1] if i else None
