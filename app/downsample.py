"""Downsampling long series for the browser while keeping spikes and extremes.

Each series is cut into buckets and only the minimum and the maximum of every bucket (plus the
first and last point) are kept, so a single spike in a million rows still reaches the chart.
Bucket sizes are powers of two: as a live run grows, completed buckets keep their points and the
chart does not shimmer from one refresh to the next.

    idx = minmax_indices(values, max_points=2000)
    small = downsample(frame, x="step", columns=["train/loss"], max_points=2000)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MAX_POINTS = 2000


def bucket_size(n: int, max_points: int = MAX_POINTS) -> int:
    """The power-of-two bucket that keeps n values to at most max_points (2 per bucket + ends)."""
    buckets = max(1, (max_points - 2) // 2)
    if n <= max_points:
        return 1
    return 2 ** math.ceil(math.log2(n / buckets))


def minmax_indices(values, max_points: int = MAX_POINTS) -> np.ndarray:
    """Sorted indices of the points to keep: min and max of each bucket, first and last.

    NaN values are never chosen as extremes (drop them first if they must not appear at all).
    """
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    size = bucket_size(n, max_points)
    if np.isnan(y).any():
        return _minmax_with_nan(y, size)
    # Fast path (no NaN): argmin/argmax over a reshaped view of the complete buckets, no copies.
    full = n // size
    grid = y[: full * size].reshape(full, size)
    offsets = np.arange(full) * size
    keep = [np.array([0, n - 1]), offsets + grid.argmin(axis=1), offsets + grid.argmax(axis=1)]
    if full * size < n:
        rest = y[full * size :]
        keep.append(np.array([full * size + rest.argmin(), full * size + rest.argmax()]))
    return np.unique(np.concatenate(keep))


def _minmax_with_nan(y: np.ndarray, size: int) -> np.ndarray:
    n = len(y)
    rows = -(-n // size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = y
    grid = padded.reshape(rows, size)
    nan = np.isnan(grid)
    lows = np.where(nan, np.inf, grid).argmin(axis=1)
    highs = np.where(nan, -np.inf, grid).argmax(axis=1)
    offsets = np.arange(rows) * size
    keep = np.concatenate(([0, n - 1], offsets + lows, offsets + highs))
    return np.unique(keep[keep < n])


def downsample(frame: pd.DataFrame, x: str, columns: list[str], max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Long-format (x, series, value) rows, at most about max_points per series.

    Rows where a series is missing (val/loss exists only at eval steps) are dropped per series
    before downsampling, so sparse series keep all of their points.
    """
    parts = []
    for column in columns:
        if column not in frame.columns or x not in frame.columns:
            continue
        xs = pd.to_numeric(frame[x], errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(ys) & np.isfinite(xs)
        xs, ys = xs[ok], ys[ok]
        if not len(ys):
            continue
        idx = minmax_indices(ys, max_points)
        parts.append(pd.DataFrame({x: xs[idx], "series": column, "value": ys[idx]}))
    if not parts:
        return pd.DataFrame(
            {x: pd.Series(dtype=float), "series": pd.Series(dtype=str), "value": pd.Series(dtype=float)}
        )
    return pd.concat(parts, ignore_index=True)
