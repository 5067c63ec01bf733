"""Read what a run directory holds, as the records the online doctor would have seen, in order.

Any subset of files works (only metrics.jsonl, say); missing or unreadable files read as empty.
A metrics.jsonl of up to FULL_ROWS rows is replayed row by row, exactly as written, so
`diagnose` and the live doctor agree. A longer one (a 1,000,000-row run) is sampled: every k-th
row (about SAMPLED_ROWS of them) plus the rows that carry a null/NaN/Infinity (the first
MAX_SPECIAL_ROWS) and up to MAX_EVAL_ROWS evenly spaced val/loss rows (the first in each of
MAX_EVAL_ROWS equal byte ranges), in file order. The onset of
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
_VAL_MARKER = b'"' + rf.VAL_LOSS.encode() + b'"'


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
    """Every k-th line, plus the lines that carry val/loss or a non-finite value.

    Parsing JSON is the cost of a big file, so only the lines kept are parsed. Newlines are found
    with numpy and the special lines with bytes.find, so nothing loops over every line in Python.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return [], 0, 1
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)  # a torn last line has no end
    n = len(ends)
    if n == 0:
        return [], 0, 1
    starts = np.concatenate(([0], ends[:-1] + 1))
    stride = max(1, math.ceil(n / SAMPLED_ROWS))
    keep = [np.arange(0, n, stride), np.array([n - 1])]
    for marker in _NON_FINITE_MARKERS:
        keep.append(_lines_with(data, marker, ends, MAX_SPECIAL_ROWS))
    keep.append(_first_in_chunks(data, _VAL_MARKER, ends, MAX_EVAL_ROWS))
    records = []
    for i in np.unique(np.concatenate(keep)).tolist():
        record = jsonl.parse_record(data[starts[i] : ends[i]])
        if record is not None and _int_step(record.get("step")):
            records.append(_nulls_for_non_finite(record))
        else:
            skipped[Path(path).name] += 1
    return records, n, stride


def _first_in_chunks(data: bytes, marker: bytes, ends, chunks: int):
    """Indices of the first line containing marker in each of `chunks` equal byte ranges: evenly
    spaced evals without scanning past the first match of each range."""
    size = max(1, len(data) // chunks)
    offsets = []
    for start in range(0, len(data), size):
        pos = data.find(marker, start, start + size + len(marker))
        if pos != -1:
            offsets.append(pos)
    lines = np.searchsorted(ends, np.asarray(offsets, dtype=np.int64))
    return np.unique(lines[lines < len(ends)])


def _lines_with(data: bytes, marker: bytes, ends, limit: int | None):
    """Indices of the lines containing marker (the first `limit` of them)."""
    offsets = []
    pos = data.find(marker)
    while pos != -1 and (limit is None or len(offsets) < limit):
        offsets.append(pos)
        pos = data.find(marker, pos + len(marker))
    lines = np.searchsorted(ends, np.asarray(offsets, dtype=np.int64))
    return lines[lines < len(ends)]


def _nulls_for_non_finite(record: dict) -> dict:
    """Other programs may write NaN/Infinity (Python's json does); the doctor reads them as null."""
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            record[key] = None
    return record
