"""Read what a run directory holds, as the records the online doctor would have seen, in order.

Any subset of files works (only metrics.jsonl, say); missing or unreadable files read as empty.
A metrics.jsonl of up to FULL_ROWS rows is replayed row by row, exactly as written, so
`diagnose` and the live doctor agree. A longer one (a 1,000,000-row run) is sampled through the
metrics cache that the dashboard reads too: every k-th row (about SAMPLED_ROWS of them) and up to
MAX_EVAL_ROWS evenly spaced val/loss rows, plus the lines that carry a null/NaN/Infinity (the
first MAX_SPECIAL_ROWS), in step order. The onset of
a non-finite value is therefore never missed; a loss spike that lasts fewer than k rows can be:
that is the price of diagnosing a million rows in a couple of seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from trainer.rundir import jsonl
from trainer.rundir import run_format as rf

FULL_ROWS = 20_000  # replayed row by row up to this many rows
SAMPLED_ROWS = 10_000  # past it, about this many evenly spaced rows (plus the special ones)
MAX_EVAL_ROWS = 5_000  # evals kept (evenly spaced when there are more)
MAX_SPECIAL_ROWS = 20_000  # non-finite rows looked up by marker; the sampled rows carry the rest
_NON_FINITE_MARKERS = (b"null", b"NaN", b"Infinity")


def read_records(path: Path, skipped: Counter | None = None) -> list[dict]:
    """Complete, well-formed jsonl records with an integer step; a torn last line is ignored. Lines
    that are not such a record are counted in skipped[file name]."""
    try:
        block = Path(path).read_bytes()
    except OSError:
        return []
    records, malformed = jsonl.parse_lines(block)
    kept = [r for r in records if _int_step(r.get("step"))]
    if skipped is not None:
        skipped[Path(path).name] += malformed + len(records) - len(kept)
    return kept


def _int_step(step) -> bool:
    return isinstance(step, int) and not isinstance(step, bool)


def count_lines(path: Path, limit: int) -> int:
    """Lines in path, counting no further than just past limit (cheap for big files)."""
    try:
        with open(path, "rb") as f:
            n = 0
            while n <= limit:
                block = f.read(1 << 20)
                if not block:
                    break
                n += block.count(b"\n")
            return n
    except OSError:
        return 0


def metrics_records(path: Path, skipped: Counter | None = None) -> tuple[list[dict], int, int]:
    """(records in order, rows in the file, sampling stride: 1 when replayed row by row). Unreadable
    lines are counted in skipped["metrics.jsonl"] (in a sampled file: among the lines read)."""
    if count_lines(path, FULL_ROWS) <= FULL_ROWS:
        records = read_records(path, skipped)
        return records, len(records), 1
    return _sampled(path, skipped if skipped is not None else Counter())


def _sampled(path: Path, skipped: Counter) -> tuple[list[dict], int, int]:
    """Every k-th row and evenly spaced val/loss rows from the metrics cache (made or extended by
    reading through it: trainer.rundir.metrics_store), plus the lines that carry a non-finite value.

    The cache reads a value logged as null and a value not logged alike (NaN), so the lines with a
    null, NaN or Infinity are found in the JSON bytes and parsed as written; each replaces the
    cached row it repeats (same step and time). Records are in step order, then time order.
    """
    # lazy for start-up cost only: the metrics cache needs pandas and polars (~0.6 s, ~100 MB),
    # which the doctor that follows a live run (trainer.doctor.follow) never needs
    from trainer.rundir.metrics_store import MetricsStore

    store = MetricsStore(path)
    store.refresh()
    view = store.view()
    n = view.rows
    skipped[Path(path).name] += store.malformed
    if n == 0:
        return [], 0, 1
    stride = max(1, math.ceil(n / SAMPLED_ROWS))
    evals = view.finite_rows(rf.VAL_LOSS)
    if len(evals) > MAX_EVAL_ROWS:
        evals = evals[np.linspace(0, len(evals) - 1, MAX_EVAL_ROWS).astype(np.int64)]
    picked = np.unique(np.concatenate([np.arange(0, n, stride), [n - 1], evals]).astype(np.int64))
    special = [_nulls_for_non_finite(record) for record in _non_finite_records(path)]
    repeated = {(record["step"], record.get("time")) for record in special}
    records = [r for r in view.records(picked) if (r["step"], r.get("time")) not in repeated] + special
    records.sort(key=lambda record: (record["step"], _number(record.get("time"))))
    return records, n, stride


def _number(value) -> float:
    return value if isinstance(value, (int, float)) and value == value else -math.inf


def _non_finite_records(path: Path) -> list[dict]:
    """The records on lines that hold a null, NaN or Infinity (the first MAX_SPECIAL_ROWS of each)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    starts = set()
    for marker in _NON_FINITE_MARKERS:
        pos, found = data.find(marker), 0
        while pos != -1 and found < MAX_SPECIAL_ROWS:
            starts.add(data.rfind(b"\n", 0, pos) + 1)
            found += 1
            pos = data.find(marker, pos + len(marker))
    records = []
    for start in sorted(starts):
        end = data.find(b"\n", start)
        if end == -1:
            continue  # a torn last line
        record = jsonl.parse_record(data[start:end])
        if record is not None and _int_step(record.get("step")):
            records.append(record)
    return records


def _nulls_for_non_finite(record: dict) -> dict:
    """Other programs may write NaN/Infinity (Python's json does); the doctor reads them as null."""
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            record[key] = None
    return record
