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
