"""Exponential moving average with TensorBoard's debiasing.

TensorBoard's smoothing starts its accumulator at 0 and divides by (1 - weight**k) after k
points, so the first points are not dragged towards zero. That is exactly an ewm with
adjust=True and alpha = 1 - weight: polars' (Rust, ~10 ms for a million points) where polars is
installed, else pandas' (Cython, about twice that, and ~150 ms on its first call in a process).

    smooth = ema(losses, weight=0.9)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer.rundir.growing import GrowingArray

try:
    import polars as pl
except ImportError:  # polars is in requirements.txt, but the dashboard does not need it to work
    pl = None


def _debiased_ewm(finite_values: np.ndarray, alpha: float) -> np.ndarray:
    if pl is not None:
        return pl.Series(finite_values).ewm_mean(alpha=alpha, adjust=True).to_numpy()
    return pd.Series(finite_values).ewm(alpha=alpha, adjust=True).mean().to_numpy()


def ema(values, weight: float) -> np.ndarray:
    """Debiased EMA of values; weight 0 returns the values, 0.99 is very smooth.

    Non-finite values (a NaN loss) are skipped by the average and returned as they are, so a
    divergence stays visible in the raw line instead of poisoning every later smoothed point.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight!r} must be in [0, 1), e.g. 0.6")
    y = np.asarray(values, dtype=float)
    if weight == 0.0 or len(y) == 0:
        return y.copy()
    finite = np.isfinite(y)
    out = y.copy()
    out[finite] = _debiased_ewm(y[finite], 1.0 - weight)
    return out


class IncrementalEma:
    """The debiased EMA of a growing series, computing only the appended values each time.

    A live chart re-smooths its series every second; for a million points that alone would use
    most of a refresh's budget. The accumulator (weighted sum and weight total) is carried over:
    for j new values with plain EMA r_j of the tail, sum_j = w^j sum + r_j d_j and
    total_j = w^j total + d_j, where d_j = (1 - w^j) / (1 - w). A series that does not extend the
    previous one (a resumed run was truncated, another run) is smoothed from scratch.
    """

    def __init__(self, weight: float):
        if not 0.0 < weight < 1.0:
            raise ValueError(f"smoothing weight {weight!r} must be in (0, 1) for IncrementalEma")
        self.weight = weight
        self._values = np.empty(0)
        self._smooth = GrowingArray()
        self._sum = 0.0
        self._total = 0.0

    def __call__(self, values) -> np.ndarray:
        """Smoothed values (finite values only: callers drop NaN/inf first)."""
        y = np.asarray(values, dtype=float)
        n = len(self._values)
        extends = len(y) >= n and (n == 0 or (y[0] == self._values[0] and y[n - 1] == self._values[n - 1]))
        if not extends:
            self.__init__(self.weight)
            n = 0
        self._values = y
        if len(y) == n:
            return self._smooth.view()
        tail = y[n:]
        w = self.weight
        r = _debiased_ewm(tail, 1.0 - w)
        if n == 0:
            # From an empty accumulator the debiased EMA is r itself; only the final sum and
            # total are carried (w**len underflows to 0 for long series, as it should).
            self._total = (1.0 - w ** len(tail)) / (1.0 - w)
            self._sum = float(r[-1]) * self._total
            self._smooth.extend(r)
            return self._smooth.view()
        j = np.arange(1, len(tail) + 1)
        decay = w**j
        d = (1.0 - decay) / (1.0 - w)
        sums = decay * self._sum + r * d
        totals = decay * self._total + d
        self._sum, self._total = float(sums[-1]), float(totals[-1])
        self._smooth.extend(sums / totals)
        return self._smooth.view()
