"""Min/max summaries of a metric series in buckets of 2^k rows, so a chart of any length reads only
what it draws.

A chart of n rows at most max_points wide needs one bucket per ~2 points: bucket_size(n) rows each
(a power of two). For each bucket it draws the row holding the minimum and the row holding the
maximum (a single spike in ten million rows still reaches the screen), at their own step or time.
Each metrics cache segment (trainer.rundir.metrics_cache) keeps these buckets at LEVELS (64, 256,
... rows); a chart takes the level just below its bucket size and merges groups of it, so a view
of ten million rows reads ~1,000 buckets per series, never the rows.

    buckets = bucket_rows(values, steps, times, size=64)      # from raw rows (NaN: no value)
    coarser = buckets.merge(4)                                # 256-row buckets from 64-row ones
    table = summary_table(columns, steps, times)              # all levels of a segment, for its file
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# Points per series that a chart draws at most (2 per bucket, plus the newest): a min/max bucket per
# one to two pixel columns of a Live chart's plot (a chart is half the page: ~400 px of plot on a
# 1,400 px window with the sidebar open, ~600 px on a 1,920 px one) still shows every spike, and a
# screenshot of a 200,000-row run at 600 points looks as it does at 1,200. Each point costs the
# browser on every refresh: a Live chart redrawn costs Chromium 14-16 ms of CPU at 60 points, 46-49 ms
# at 600 and 74-89 ms at 1,200 (benchmarks/chart_cost.py), taken from a run on the same machine.
MAX_POINTS = 600
# Bucket sizes kept with the cache: 2^6 to 2^16 rows, a factor 4 apart (a chart merges at most 4
# buckets of the level below its own). Smaller buckets are computed from the rows themselves
# (a chart of fewer than ~64k rows), bigger ones merged from 2^16 (a chart of over ~65M rows).
LEVELS = tuple(2**k for k in range(6, 17, 2))
AXES = ("step", "time")
# One row per (series, level, bucket) in a segment's summary file.
SUMMARY_SCHEMA = pa.schema(
    [
        ("series", pa.dictionary(pa.int32(), pa.string())),  # codes: no string per bucket to read back
        ("level", pa.int64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("step_at_min", pa.float64()),
        ("step_at_max", pa.float64()),
        ("time_at_min", pa.float64()),
        ("time_at_max", pa.float64()),
        ("total", pa.float64()),
        ("count", pa.int64()),
    ]
)


def bucket_size(n: int, max_points: int = MAX_POINTS) -> int:
    """The power-of-two bucket that keeps n rows to at most max_points points (2 per bucket)."""
    buckets = max(1, (max_points - 2) // 2)
    if n <= max_points:
        return 1
    return 2 ** math.ceil(math.log2(n / buckets))


@dataclass
class Buckets:
    """Consecutive buckets of one series: the min and max of each with where they are on both x
    axes, and the sum and count of its finite values (count 0: an empty bucket, min/max NaN)."""

    min: np.ndarray
    max: np.ndarray
    step_at_min: np.ndarray
    step_at_max: np.ndarray
    time_at_min: np.ndarray
    time_at_max: np.ndarray
    total: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.count)

    @classmethod
    def empty(cls) -> Buckets:
        return cls(*([np.empty(0)] * 7), np.empty(0, np.int64))

    @classmethod
    def concat(cls, parts: list[Buckets]) -> Buckets:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS))

    def x_at(self, axis: str) -> tuple[np.ndarray, np.ndarray]:
        """Where each bucket's min and max are on the axis ("step" or "time")."""
        return (self.step_at_min, self.step_at_max) if axis == "step" else (self.time_at_min, self.time_at_max)

    def merge(self, factor: int) -> Buckets:
        """Buckets of `factor` consecutive buckets each (the last may hold fewer)."""
        if factor <= 1 or not len(self):
            return self
        groups = -(-len(self) // factor)
        pad = groups * factor - len(self)
        empty = self.count == 0

        def grid(values, fill):
            return np.concatenate([values, np.full(pad, fill, values.dtype)]).reshape(groups, factor)

        lows = grid(np.where(empty, np.inf, self.min), np.inf).argmin(axis=1)
        highs = grid(np.where(empty, -np.inf, self.max), -np.inf).argmax(axis=1)
        rows = np.arange(groups)

        def pick(values, at):
            return grid(values, np.nan)[rows, at]

        return Buckets(
            pick(self.min, lows),
            pick(self.max, highs),
            pick(self.step_at_min, lows),
            pick(self.step_at_max, highs),
            pick(self.time_at_min, lows),
            pick(self.time_at_max, highs),
            grid(self.total, 0.0).sum(axis=1),
            grid(self.count, 0).sum(axis=1),
        )


_FIELDS = tuple(Buckets.__dataclass_fields__)


def bucket_rows(values: np.ndarray, steps: np.ndarray, times: np.ndarray, size: int) -> Buckets:
    """Buckets of `size` consecutive rows (the last may hold fewer); NaN is no value.

    This runs over every row once when a segment is cached, so it avoids copies: a series without
    gaps is reduced in place, and step and time are looked up only at the chosen rows."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    full = n // size
    parts = []
    if full:
        parts.append(_whole_buckets(values[: full * size], steps, times, size, 0))
    if full * size < n:
        parts.append(_whole_buckets(values[full * size :], steps, times, n - full * size, full * size))
    return Buckets.concat(parts) if parts else Buckets.empty()


def _whole_buckets(values: np.ndarray, steps, times, size: int, start: int) -> Buckets:
    """Buckets of exactly `size` rows over values (rows start.. of steps and times)."""
    grid = values.reshape(-1, size)
    missing = ~np.isfinite(grid)
    if missing.any():
        count = size - missing.sum(axis=1)
        total = np.where(missing, 0.0, grid).sum(axis=1)
        lows = np.where(missing, np.inf, grid).argmin(axis=1)
        highs = np.where(missing, -np.inf, grid).argmax(axis=1)
    else:
        count = np.full(len(grid), size)
        total = grid.sum(axis=1)
        lows, highs = grid.argmin(axis=1), grid.argmax(axis=1)
    first = np.arange(len(grid)) * size
    low_rows, high_rows = first + lows, first + highs
    low_values, high_values = values[low_rows], values[high_rows]
    empty = count == 0
    if empty.any():
        low_values[empty] = np.nan
        high_values[empty] = np.nan
    low_rows += start
    high_rows += start
    return Buckets(
        low_values,
        high_values,
        np.asarray(steps[low_rows], dtype=float),
        np.asarray(steps[high_rows], dtype=float),
        np.asarray(times[low_rows], dtype=float),
        np.asarray(times[high_rows], dtype=float),
        total,
        count.astype(np.int64),
    )


def summary_table(columns: dict[str, np.ndarray], steps: np.ndarray, times: np.ndarray) -> pa.Table:
    """Every series' buckets at every level in LEVELS, for one segment's rows: the file kept with it.

    Each level is merged from the one below (x4), so the rows are read once."""
    parts = []
    for name, values in columns.items():
        buckets = bucket_rows(values, steps, times, LEVELS[0])
        for i, level in enumerate(LEVELS):
            if i:
                buckets = buckets.merge(level // LEVELS[i - 1])
            parts.append((name, level, buckets))
    if not parts:
        return SUMMARY_SCHEMA.empty_table()
    lengths = [len(b) for _, _, b in parts]
    names = list(columns)
    codes = np.repeat([names.index(name) for name, _, _ in parts], lengths).astype(np.int32)
    data = {
        "series": pa.DictionaryArray.from_arrays(codes, pa.array(names, pa.string())),
        "level": np.repeat([level for _, level, _ in parts], lengths).astype(np.int64),
    }
    for name in _FIELDS:
        data[name] = np.concatenate([getattr(b, name) for _, _, b in parts])
    return pa.table(data, schema=SUMMARY_SCHEMA)


def summary_index(table: pa.Table) -> dict[tuple[str, int], Buckets]:
    """{(series, level): Buckets} of a summary file (the arrays stay views of the table's buffers)."""
    if table.num_rows == 0:
        return {}
    column = table.column("series").combine_chunks()
    series, names = column.indices.to_numpy(), column.dictionary.to_pylist()
    level = table.column("level").to_numpy()
    arrays = {name: table.column(name).to_numpy() for name in _FIELDS}
    keys = np.flatnonzero((series[1:] != series[:-1]) | (level[1:] != level[:-1])) + 1
    starts = np.concatenate(([0], keys))
    stops = np.concatenate((keys, [len(level)]))
    return {
        (names[series[a]], int(level[a])): Buckets(*(arrays[name][a:b] for name in _FIELDS))
        for a, b in zip(starts.tolist(), stops.tolist())
    }
