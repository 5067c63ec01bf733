"""Numeric jsonl lines to columns, fast, and a DataFrame that grows without being copied.

trainer.reader uses this for metrics.jsonl and grads.jsonl, whose values are numbers. Two parsers,
picked by the size of what arrived:
- a big block (a cold load: the whole file) goes through pyarrow's multithreaded JSON reader,
  which handles nulls, keys missing from some rows and keys first seen late in the file; if a
  block holds anything pyarrow refuses (a malformed line, a value that changes type), only the
  ~1 MB piece around it is re-read line by line, so one bad line costs neither the file nor speed;
- a small block (an incremental poll of a few rows) goes through json.loads, whose start-up cost
  is nil.
Both give the same columns: "step" int64, everything else float64, NaN where a row has no value,
its value is null, or its value is not a number. A row without an integer "step" is dropped and
counted as malformed: it cannot be placed on the step axis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

# Below this many bytes json.loads wins: pyarrow's fixed cost (threads, schema inference) is ~1 ms.
PYARROW_MIN_BYTES = 64 * 1024
# A cold load is parsed in pieces of this size: ~35% faster than one pyarrow call on a 400 MB file
# (smaller tables, no final concatenation), and a piece is the most one bad line can slow down.
BIG_PIECE_BYTES = 8 << 20
# A piece that fails is re-read in pieces of this size, and only those that fail line by line.
PIECE_BYTES = 1 << 20
STEP, TIME = "step", "time"


@dataclass
class Columns:
    """Parsed rows: name -> array of `rows` values ("step" int64, the rest float64)."""

    data: dict[str, np.ndarray]
    rows: int
    malformed: int = 0


def parse_numeric_lines(block: bytes) -> list[Columns]:
    """Parse complete jsonl lines (block ends with a newline) into column pieces, in file order."""
    if not block or block.isspace():  # isspace stops at the first non-space; strip would copy
        return []
    if len(block) < PYARROW_MIN_BYTES:
        return [_parse_with_json(block)]
    view = memoryview(block)  # pieces are slices of it, not copies
    columns: list[Columns] = []
    for start, stop in _line_ranges(block, 0, len(block), BIG_PIECE_BYTES):
        try:
            columns.append(_parse_with_pyarrow(view[start:stop]))
        except (pa.ArrowInvalid, _NotNumeric):
            for small_start, small_stop in _line_ranges(block, start, stop, PIECE_BYTES):
                try:
                    columns.append(_parse_with_pyarrow(view[small_start:small_stop]))
                except (pa.ArrowInvalid, _NotNumeric):
                    columns.append(_parse_with_json(block[small_start:small_stop]))
    return columns


def records_to_columns(records: list[Any], flatten: bool = False) -> Columns:
    """Columns from already-decoded records; with flatten, nested dicts become "outer/inner" keys."""
    rows: list[dict] = []
    malformed = 0
    for record in records:
        step = record.get(STEP) if isinstance(record, dict) else None
        if not _is_integer(step):
            malformed += 1
            continue
        rows.append(_flatten(record) if flatten else record)
    if not rows:
        return Columns({}, 0, malformed)
    n = len(rows)
    index: dict[str, list[int]] = {STEP: [], TIME: []}
    values: dict[str, list[float]] = {STEP: [], TIME: []}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key not in index:
                index[key], values[key] = [], []
            index[key].append(i)
            values[key].append(_as_float(value))
    data = {STEP: np.array([int(v) for v in values[STEP]], dtype=np.int64)}
    for key in values:
        if key == STEP:
            continue
        column = np.full(n, np.nan)
        column[index[key]] = values[key]
        data[key] = column
    return Columns(data, n, malformed)


class GrowingFrame:
    """A DataFrame that rows are appended to in amortised O(new rows).

    Columns live in over-allocated numpy arrays (capacity doubles when full); frame() wraps views of
    the filled part without copying. Rows already published are never written again (a new column
    or a bigger capacity gets a fresh array), so frames handed out earlier stay valid and unchanged.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._rows = 0
        self._capacity = 0
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self._rows

    def append(self, columns: Columns) -> None:
        if columns.rows == 0:
            return
        if self._capacity == 0:
            # First data: adopt the parser's arrays as they are (no copy for a cold load).
            self._arrays = {name: values for name, values in columns.data.items()}
            self._arrays.setdefault(TIME, np.full(columns.rows, np.nan))
            self._rows = self._capacity = columns.rows
            self._frame = None
            return
        end = self._rows + columns.rows
        if end > self._capacity:
            self._grow(end)
        for name, values in columns.data.items():
            if name not in self._arrays:
                self._arrays[name] = _empty_column(name, self._capacity)
            self._arrays[name][self._rows : end] = values
        self._rows = end
        self._frame = None

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            if self._rows == 0:
                self._frame = pd.DataFrame({STEP: np.array([], np.int64), TIME: np.array([], float)})
            else:
                names = [STEP, TIME] + [n for n in self._arrays if n not in (STEP, TIME)]
                self._frame = pd.DataFrame({n: self._arrays[n][: self._rows] for n in names}, copy=False)
        return self._frame

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self._capacity, 1024)
        for name, old in self._arrays.items():
            new = _empty_column(name, capacity)
            new[: self._rows] = old[: self._rows]
            self._arrays[name] = new
        self._capacity = capacity


# --- internals ------------------------------------------------------------------------------
class _NotNumeric(Exception):
    """pyarrow parsed the block but its step column cannot be trusted; re-read it line by line."""


def _parse_with_json(block: bytes) -> Columns:
    records, malformed = [], 0
    for line in block.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:  # includes UnicodeDecodeError
            malformed += 1
    columns = records_to_columns(records)
    columns.malformed += malformed
    return columns


def _parse_with_pyarrow(block: memoryview) -> Columns:
    table = pa_json.read_json(pa.BufferReader(pa.py_buffer(block)))
    if table.num_rows == 0:
        return Columns({}, 0)
    if STEP not in table.column_names or not pa.types.is_integer(table.schema.field(STEP).type):
        raise _NotNumeric  # missing or float/string steps: let the line parser judge each row
    step = table.column(STEP)
    malformed = step.null_count
    if malformed:
        table = table.filter(step.is_valid())
    data = {STEP: table.column(STEP).to_numpy().astype(np.int64, copy=False)}
    for name in table.column_names:
        if name != STEP:
            data[name] = _float_column(table.column(name))
    return Columns(data, table.num_rows, malformed)


def _float_column(column: pa.ChunkedArray) -> np.ndarray:
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return column.cast(pa.float64()).to_numpy()
    return np.full(len(column), np.nan)  # strings, lists, objects: not a number


def _empty_column(name: str, capacity: int) -> np.ndarray:
    # Steps are always present, so zeros never show; other columns are NaN until a row sets them.
    return np.zeros(capacity, np.int64) if name == STEP else np.full(capacity, np.nan)


def _line_ranges(data: bytes, start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) offsets of consecutive pieces of data[start:stop], each about `size` bytes and
    ending at a line end."""
    ranges = []
    while start < stop:
        end = data.find(b"\n", start + size, stop)
        end = stop if end < 0 else end + 1
        ranges.append((start, end))
        start = end
    return ranges


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _as_float(value: Any) -> float:
    if isinstance(value, (int, float)):  # bool included: True -> 1.0
        try:
            return float(value)
        except OverflowError:  # an int beyond float range
            return math.nan
    return math.nan


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat
