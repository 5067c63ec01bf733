"""Incremental downsampling and smoothing of growing series, for refreshes that stay cheap.

A live page redraws every second; for a run with a million rows, filtering, smoothing and
min/max-bucketing the whole series each time costs more than the refresh budget. Rows are only
ever appended (a resume that truncates a file makes the reader start over, which shows up here as
a series that no longer extends the previous one, and everything is recomputed). Buckets are
powers of two (app.downsample), so completed buckets keep their min/max until the bucket size
doubles; each refresh processes only the new rows and the last, incomplete bucket.

    series = IncrementalSeries(weight=0.6)
    x, value, smoothed = series.update(steps, losses)
"""

from __future__ import annotations

import math

import numpy as np

from app.downsample import MAX_POINTS, bucket_size
from app.smoothing import IncrementalEma
from trainer.rundir.growing import GrowingArray


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class IncrementalSeries:
    """One (run, series) kept ready for charting: finite points, EMA, min/max bucket indices."""

    def __init__(self, weight: float = 0.0, positive_only: bool = False, max_points: int = MAX_POINTS):
        self.weight = weight
        self.positive_only = positive_only
        self.max_points = max_points
        self._reset()

    def _reset(self) -> None:
        self._consumed = 0  # raw rows read so far
        self._signature: tuple = ()
        self._xs, self._ys = GrowingArray(), GrowingArray()
        self._ema = IncrementalEma(self.weight) if self.weight > 0 else None
        self._bucket = 0
        self._done_buckets = 0
        self._kept = np.empty(0, np.int64)  # sorted indices chosen in completed buckets
        self._drawn: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # last result

    def _extends(self, xs: np.ndarray, ys: np.ndarray) -> bool:
        n = self._consumed
        if n == 0:
            return True
        if len(ys) < n:
            return False
        return self._signature == () or all(
            _same(a, b) for a, b in zip(self._signature, (xs[0], ys[0], xs[n - 1], ys[n - 1]))
        )

    def update(self, xs_all: np.ndarray, ys_all: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, value, smoothed) of the points to draw, given the full raw columns.

        The columns may be integer or float: only the new rows are converted, so a refresh of a
        million-row run touches the appended rows and the ~2,000 drawn points, nothing else.
        """
        if not self._extends(xs_all, ys_all):
            self._reset()
        if len(ys_all) == self._consumed and self._drawn is not None:
            return self._drawn  # nothing new: the same arrays as last time
        new_x = np.asarray(xs_all[self._consumed :], dtype=float)
        new_y = np.asarray(ys_all[self._consumed :], dtype=float)
        if len(new_y):
            ok = np.isfinite(new_y) & np.isfinite(new_x)
            if self.positive_only:
                ok &= new_y > 0
            if ok.all():
                self._xs.extend(new_x)
                self._ys.extend(new_y)
            else:
                self._xs.extend(new_x[ok])
                self._ys.extend(new_y[ok])
            self._consumed = len(ys_all)
            self._signature = (xs_all[0], ys_all[0], xs_all[-1], ys_all[-1])
        xs, ys = self._xs.view(), self._ys.view()
        smooth = self._ema(ys) if self._ema is not None else ys
        idx = self._indices(ys)
        self._drawn = (xs[idx], ys[idx], smooth[idx])
        return self._drawn

    def _indices(self, ys: np.ndarray) -> np.ndarray:
        """Sorted, distinct indices: first, last, and min and max of every bucket.

        Completed buckets are computed once (until the bucket size doubles) and kept sorted, so
        a refresh only looks at the last, incomplete bucket: no sort over the whole selection.
        """
        n = len(ys)
        if n <= self.max_points:
            return np.arange(n)
        size = bucket_size(n, self.max_points)
        if size != self._bucket:
            self._bucket, self._done_buckets, self._kept = size, 0, np.empty(0, np.int64)
        full = n // size
        if full > self._done_buckets:
            start = self._done_buckets * size
            grid = ys[start : full * size].reshape(-1, size)
            offsets = start + np.arange(len(grid)) * size
            self._kept = np.concatenate(
                [self._kept, _pairs(offsets + grid.argmin(axis=1), offsets + grid.argmax(axis=1))]
            )
            self._done_buckets = full
        parts = [np.array([0]), self._kept]
        if full * size < n:
            rest = ys[full * size :]
            parts.append(_pairs(np.array([full * size + rest.argmin()]), np.array([full * size + rest.argmax()])))
        parts.append(np.array([n - 1]))
        return _distinct(np.concatenate(parts))


def _pairs(lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Each bucket's two indices in order, bucket after bucket: sorted already."""
    pairs = np.sort(np.stack([lows, highs], axis=1), axis=1).ravel()
    return _distinct(pairs)


def _distinct(sorted_idx: np.ndarray) -> np.ndarray:
    """Drop repeats from a sorted index array (a bucket whose min and max are one point)."""
    if len(sorted_idx) < 2:
        return sorted_idx
    keep = np.empty(len(sorted_idx), bool)
    keep[0] = True
    np.not_equal(sorted_idx[1:], sorted_idx[:-1], out=keep[1:])
    return sorted_idx[keep]
