"""metrics.jsonl as a reader holds it: cached segments (memory-mapped) plus the rows past them.

Opening a run loads its cache (trainer.rundir.metrics_cache) and parses only the bytes the cache
does not cover, so opening costs the same for a thousand rows and ten million. Rows parsed are
appended to the cache in segments of about SEGMENT_ROWS: the rows a process holds in its own memory
are the few since the last segment, whatever the run's length. A chart asks a MetricsView for
min/max buckets (trainer.rundir.summary), which come from the segments' summaries, not their rows.

    store = MetricsStore(run_dir / "metrics.jsonl")
    store.refresh()                  # what was appended (the first call: the cache, then the rest)
    view = store.view()              # immutable: safe to share between threads and sessions
    view.buckets("train/loss", "step", max_points=600)   # what a chart draws
    view.tail(2000)                  # the newest rows as a DataFrame
    view.frame()                     # every row (a CSV export, a test): costs the whole run
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.rundir.jsonl import JsonlTail
from trainer.rundir.jsonl_frame import GrowingFrame, parse_numeric_lines
from trainer.rundir.metrics_cache import MetricsCache, Segment
from trainer.rundir.summary import LEVELS, MAX_POINTS, Buckets, bucket_rows, bucket_size

SEGMENT_ROWS = 1 << 16  # rows held in memory before they go to the cache as a segment
READ_BYTES = 64 << 20  # a cold read parses this much at a time: memory stays bounded on any file
# At the end of a first read, rows past the last full segment are cached too if there are this
# many: the next open then parses almost nothing. Fewer stay in memory (a small run has no cache).
MIN_FLUSH_ROWS = 4096
STEP, TIME = "step", "time"


class MetricsStore:
    """The rows of one metrics.jsonl, read incrementally through its cache. Not thread-safe: the
    RunReader that owns it holds its lock; views it hands out are immutable and shareable.

    use_cache=False neither reads nor writes the cache (segments are kept in memory): a cold parse
    as it was before the cache, for benchmarks.
    """

    def __init__(self, path: str | Path, segment_rows: int = SEGMENT_ROWS, use_cache: bool = True):
        self.path = Path(path)
        self.segment_rows = segment_rows
        self.use_cache = use_cache
        self._tail = JsonlTail(self.path)
        self._cache = MetricsCache(self.path)
        self._cache.writable = use_cache
        self._opened = False
        self._clear()

    def _clear(self) -> None:
        self._segments: list[Segment] = []
        self._segment_rows = 0
        self._pending = GrowingFrame()
        self._names: dict[str, None] = dict.fromkeys([STEP, TIME])  # an ordered set
        self.malformed = 0  # lines skipped: not a JSON object, or no integer step
        self._view: MetricsView | None = None

    @property
    def resets(self) -> int:
        return self._tail.resets

    @property
    def pending(self) -> int:
        """Bytes past the last complete line of metrics.jsonl: a line being written, or torn for good."""
        return self._tail.pending

    @property
    def segments(self) -> int:
        """Segments held (cached or, where the cache cannot be written, in memory)."""
        return len(self._segments)

    def refresh(self) -> bool:
        """Read what was appended (the whole file the first time, past its cache); True if anything
        changed. A file replaced or shrunk is read again from the start and its cache rebuilt."""
        changed = False
        first = not self._opened
        if first:
            self._opened = True
            changed = self._open_cache()
        while True:
            block = self._tail.poll_block(READ_BYTES)
            if self._tail.was_reset:
                self._clear()
                self._cache.clear()
                changed = True
            if not block:
                break
            # Only names read from rows are a schema hint: step and time alone would make the
            # parser read its first piece twice (no hint lets it take the keys from the first lines).
            pieces = parse_numeric_lines(block, known=self._names if len(self._names) > 2 else ())
            for piece in pieces:
                self.malformed += piece.malformed
                self._names.update(dict.fromkeys(piece.data))
            self._pending.extend(pieces)
            changed = True
            if len(self._pending) >= self.segment_rows:
                self._flush()
        if first and len(self._pending) >= MIN_FLUSH_ROWS:
            self._flush()
        if changed:
            self._view = None
        return changed

    def view(self) -> MetricsView:
        if self._view is None:
            self._view = MetricsView([*self._segments, _FramePart(self._pending.frame())], list(self._names))
        return self._view

    def _open_cache(self) -> bool:
        loaded = self._cache.load() if self.use_cache else None
        if loaded is None:
            return False
        self._segments = loaded.segments
        self._segment_rows = sum(segment.rows for segment in loaded.segments)
        self.malformed = loaded.malformed
        for segment in loaded.segments:
            self._names.update(dict.fromkeys(segment.table.column_names))
        self._tail.start_at(loaded.offset)
        return bool(self._segments)

    def _flush(self) -> None:
        """The rows in memory become a segment of the cache (mapped from its file from now on)."""
        frame = self._pending.frame()
        columns = {name: frame[name].to_numpy() for name in frame.columns}
        segment = self._cache.append(columns, self._tail, self.malformed, self._segment_rows)
        self._segments.append(segment)
        self._segment_rows += segment.rows
        self._pending = GrowingFrame()


@dataclass(frozen=True)
class SeriesBuckets:
    """What a chart of one series draws: its buckets (size rows each), and the newest finite row
    (step, time, value) so a live chart always reaches the last step, or None."""

    buckets: Buckets
    size: int
    newest: tuple[float, float, float] | None


class MetricsView:
    """The rows of a metrics file at one instant: segments plus the rows in memory after them.

    Immutable (segments never change, the rows in memory are a frame no one writes into again), so
    one view serves every caller of a snapshot.
    """

    def __init__(self, parts: list, names: list[str]):
        self._parts = [part for part in parts if part.rows]
        self.columns = names
        self.rows = sum(part.rows for part in self._parts)
        self._frame: pd.DataFrame | None = None
        # What callers derive from the view (a chart's points), kept with it: a view never changes,
        # so every session that draws the same snapshot shares the work.
        self.derived: dict = {}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> MetricsView:
        """A view of rows already in a DataFrame (a test's, an importer's)."""
        return cls([_FramePart(frame)], list(frame.columns))

    def __len__(self) -> int:
        return self.rows

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def frame(self) -> pd.DataFrame:
        """Every row: step int64, time, then one float column per series (NaN: no value). The cost
        of the whole run in memory: for exports and tests, never for charts."""
        if self._frame is None:
            self._frame = _frame_of([(part, 0, part.rows) for part in self._parts], self.columns)
        return self._frame

    def tail(self, rows: int) -> pd.DataFrame:
        """The newest `rows` rows as a DataFrame (what metric tiles show)."""
        ranges, need = [], rows
        for part in reversed(self._parts):
            if need <= 0:
                break
            take = min(need, part.rows)
            ranges.insert(0, (part, part.rows - take, part.rows))
            need -= take
        return _frame_of(ranges, self.columns)

    def window(self, axis: str, low: float | None = None, high: float | None = None) -> pd.DataFrame:
        """The raw rows whose axis ("step" or "time") is within [low, high]: a zoomed-in chart."""
        return _frame_of(self._ranges(axis, low, high), self.columns)

    def buckets(
        self,
        series: str,
        axis: str = STEP,
        max_points: int = MAX_POINTS,
        low: float | None = None,
        high: float | None = None,
    ) -> SeriesBuckets:
        """Min/max buckets of series over the rows whose axis is within [low, high] (all rows by
        default), at most about max_points points; buckets of one row each when there are few."""
        ranges = [(part, a, b) for part, a, b in self._ranges(axis, low, high) if part.column(series) is not None]
        rows = sum(b - a for _, a, b in ranges)
        size = bucket_size(rows, max_points)
        limit = max(1, (max_points - 2) // 2)
        while True:  # each part starts a bucket: a part's last bucket can be partial
            buckets = Buckets.concat([_part_buckets(part, series, size, a, b) for part, a, b in ranges])
            if size == 1 and len(buckets) <= max_points:
                return SeriesBuckets(buckets, size, _newest(ranges, series))  # every row, one point each
            if len(buckets) <= limit or size >= rows:
                break
            size *= 2
        if len(buckets) > limit:  # more parts than buckets fit (a run of ~65M rows and more)
            factor = -(-len(buckets) // limit)
            buckets, size = buckets.merge(factor), size * factor
        return SeriesBuckets(buckets, size, _newest(ranges, series))

    def finite_rows(self, series: str) -> np.ndarray:
        """Indices of the rows where series has a finite value, in order."""
        found, start = [], 0
        for part in self._parts:
            values = part.column(series)
            if values is not None:
                found.append(start + np.flatnonzero(np.isfinite(values)))
            start += part.rows
        return np.concatenate(found) if found else np.empty(0, np.int64)

    def records(self, rows: np.ndarray) -> list[dict]:
        """The rows at these sorted indices as records: step, then each finite value (NaN, a value
        logged as null or not logged at all, is left out)."""
        out, start = [], 0
        for part in self._parts:
            local = rows[(rows >= start) & (rows < start + part.rows)] - start
            start += part.rows
            if not len(local):
                continue
            names = [name for name in self.columns if name != STEP and part.column(name) is not None]
            steps = part.column(STEP)[local].tolist()
            columns = [(name, part.column(name)[local].tolist()) for name in names]
            for i, step in enumerate(steps):
                record = {STEP: int(step)}
                for name, values in columns:
                    value = values[i]
                    if value == value and value not in (np.inf, -np.inf):
                        record[name] = value
                out.append(record)
        return out

    def _ranges(self, axis: str, low: float | None, high: float | None) -> list[tuple]:
        """(part, first row, end row) of the rows within [low, high] on axis, which rises with the
        row (steps and wall time do: a resume rewrites the file without the rows it repeats)."""
        out = []
        for part in self._parts:
            a, b = 0, part.rows
            if low is not None or high is not None:
                x = part.column(axis)
                if x is None:
                    continue
                a = 0 if low is None else int(np.searchsorted(x, low, "left"))
                b = part.rows if high is None else int(np.searchsorted(x, high, "right"))
            if b > a:
                out.append((part, a, b))
        return out


class _FramePart:
    """Rows in memory (the newest, not cached yet) as a part of a view."""

    summary: dict = {}

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.rows = len(frame)

    def column(self, name: str) -> np.ndarray | None:
        return self.frame[name].to_numpy() if name in self.frame.columns else None


def _part_buckets(part: Segment | _FramePart, series: str, size: int, a: int, b: int) -> Buckets:
    """Buckets of `size` rows over part's rows [a, b): from its summary when the whole part is
    asked and a level fits (a segment), else from the rows themselves."""
    whole = a == 0 and b == part.rows
    if whole and size >= LEVELS[0] and (series, LEVELS[0]) in part.summary:
        key = (series, size)
        if key not in part.derived:
            level = max(level for level in LEVELS if level <= size)
            part.derived[key] = part.summary[(series, level)].merge(size // level)
        return part.derived[key]
    values = part.column(series)
    if values is None:
        return Buckets.empty()
    return bucket_rows(values[a:b], _axis(part, STEP)[a:b], _axis(part, TIME)[a:b], size)


def _axis(part: Segment | _FramePart, name: str) -> np.ndarray:
    """A part's step or time column; NaN throughout if it has none (a frame made by hand)."""
    column = part.column(name)
    return np.full(part.rows, np.nan) if column is None else column


def _newest(ranges: list[tuple], series: str) -> tuple[float, float, float] | None:
    """(step, time, value) of the last finite value of series in the ranges, or None. A whole
    segment's answer is remembered with it (a series that stopped being logged long ago would
    otherwise be searched for at every refresh)."""
    for part, a, b in reversed(ranges):
        values = part.column(series)
        if values is None:
            continue
        whole = bool(part.summary) and (a, b) == (0, part.rows)
        key = ("newest", series)
        if whole and key in part.derived:
            row = part.derived[key]
        else:
            row = _last_finite(values, a, b)
            if whole:
                part.derived[key] = row
        if row is not None:
            return float(_axis(part, STEP)[row]), float(_axis(part, TIME)[row]), float(values[row])
    return None


def _last_finite(values: np.ndarray, a: int, b: int) -> int | None:
    """The last row in [a, b) with a finite value, read from the end a few thousand rows at a time."""
    stop = b
    while stop > a:
        start = max(a, stop - 4096)
        finite = np.flatnonzero(np.isfinite(values[start:stop]))
        if len(finite):
            return start + int(finite[-1])
        stop = start
    return None


def _frame_of(ranges: list[tuple], names: list[str]) -> pd.DataFrame:
    """The rows of the ranges as one DataFrame with the given columns (NaN where a part lacks one);
    a single range gives views of its columns, no copies."""
    data = {}
    for name in names:
        kind = np.int64 if name == STEP else float
        pieces = []
        for part, a, b in ranges:
            column = part.column(name)
            if column is None:
                column = np.zeros(part.rows, kind) if name == STEP else np.full(part.rows, np.nan)
            pieces.append(column[a:b])
        if len(pieces) == 1:
            data[name] = pieces[0]
        else:
            data[name] = np.concatenate(pieces).astype(kind, copy=False) if pieces else np.empty(0, kind)
    return pd.DataFrame(data, copy=False)
