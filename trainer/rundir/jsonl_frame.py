"""Numeric jsonl lines to columns, fast, and a DataFrame that grows without being copied.

trainer.rundir.reader uses this for metrics.jsonl and grads.jsonl, whose values are numbers. Parsers are
picked by the size of what arrived and by what is in it:
- a big block (a cold load: up to 64 MB at a time) goes through polars' NDJSON reader in ~16 MB pieces,
  about twice as fast end to end as pyarrow's JSON reader; a key first seen late in the file
  (val/loss at the first eval, a series added on resume) is never lost: see _parse_with_polars;
- a piece polars refuses (a malformed line; a string, list or bool where a number belongs) is
  re-read in ~1 MB pieces by polars, then pyarrow (which turns non-numbers into NaN), then, for a
  1 MB piece both refuse, line by line with json.loads: one bad line costs neither the file nor
  speed, and the malformed count stays exact;
- a small block (an incremental poll of a few rows) goes through json.loads, whose start-up cost
  is nil.
polars is optional: without it pyarrow takes its place (a cold load then takes ~2x longer).
All give the same columns: "step" int64, everything else float64, NaN where a row has no value,
its value is null, or its value is not a number. A row without an integer "step" is dropped and
counted as malformed: it cannot be placed on the step axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from trainer.rundir.growing import GrowingArray

try:
    import polars as pl
except ImportError:  # optional: pyarrow parses instead, ~2x slower on a cold load
    pl = None

# Below this many bytes json.loads wins: a bulk parser's fixed cost (threads, schema) is ~1 ms.
FAST_MIN_BYTES = 64 * 1024
# A cold load is parsed in pieces of this size: no giant intermediate tables, and a piece is the
# most that one bad line or one new key can slow down.
BIG_PIECE_BYTES = 16 << 20
# A piece that fails is re-read in pieces of this size, and only those that fail line by line.
PIECE_BYTES = 1 << 20
STEP, TIME = "step", "time"


@dataclass
class Columns:
    """Parsed rows: name -> array of `rows` values ("step" int64, the rest float64)."""

    data: dict[str, np.ndarray]
    rows: int
    malformed: int = 0


def parse_numeric_lines(block: bytes, known: Iterable[str] = ()) -> list[Columns]:
    """Parse complete jsonl lines (block ends with a newline) into column pieces, in file order.

    known: the columns already read from earlier lines (a tail passes its frame's), so that the
    fast parser starts with the right schema; a hint only, any other key is found anyway.
    """
    if not block or block.isspace():  # isspace stops at the first non-space; strip would copy
        return []
    if len(block) < FAST_MIN_BYTES:
        return [_parse_with_json(block)]
    view = memoryview(block)  # pieces are slices of it, not copies
    names = dict.fromkeys(known)  # an ordered set, grown piece by piece
    columns: list[Columns] = []

    def add(piece: Columns) -> None:
        names.update(dict.fromkeys(piece.data))
        columns.append(piece)

    for start, stop in _line_ranges(block, 0, len(block), BIG_PIECE_BYTES):
        piece = _parse_with_polars(view[start:stop], list(names)) if pl else _parse_with_pyarrow(view[start:stop])
        if piece is not None:
            add(piece)
            continue
        for a, b in _line_ranges(block, start, stop, PIECE_BYTES):  # narrow down what needs a closer look
            piece = _parse_with_polars(view[a:b], list(names))
            if piece is None:
                piece = _parse_with_pyarrow(view[a:b])
            add(piece if piece is not None else _parse_with_json(block[a:b]))
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

    Each column is a GrowingArray (trainer.rundir.growing); frame() wraps views of the filled part
    without copying. Rows already published are never written again (a bigger capacity is a fresh
    array), so frames handed out earlier stay valid and unchanged.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._columns: dict[str, GrowingArray] = {}
        self._rows = 0
        self._room = 0  # rows extend() made room for: a column first seen later gets as much at once
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self._rows

    @property
    def capacity(self) -> int:
        """Rows the columns hold without another copy (the smallest column's room)."""
        return min((column.capacity for column in self._columns.values()), default=0)

    def names(self) -> list[str]:
        """The column names so far (a parser's schema hint)."""
        return list(self._columns)

    def append(self, columns: Columns) -> None:
        if columns.rows == 0:
            return
        for name in (STEP, TIME, *columns.data):
            if name not in self._columns:
                self._columns[name] = self._new_column(name)
        for name, column in self._columns.items():
            values = columns.data.get(name)
            if values is None:
                column.fill(columns.rows, _missing(name))  # a row without this series: NaN
            else:
                column.extend(values)  # the first block of a cold load is adopted, not copied
        self._rows += columns.rows
        self._frame = None

    def extend(self, pieces: list[Columns]) -> None:
        """Append pieces in order, making room for all at once: a cold load's ~50 pieces are then
        copied once, not once per doubling; 1/8 more, so the polls after it do not copy it all."""
        needed = self._rows + sum(columns.rows for columns in pieces)
        if len(pieces) > 1 and needed > self.capacity:
            self._room = needed + needed // 8
            for column in self._columns.values():
                column.reserve(self._room)
        for columns in pieces:
            self.append(columns)

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            if self._rows == 0:
                self._frame = pd.DataFrame({STEP: np.array([], np.int64), TIME: np.array([], float)})
            else:
                names = [STEP, TIME] + [n for n in self._columns if n not in (STEP, TIME)]
                self._frame = pd.DataFrame({n: self._columns[n].view() for n in names}, copy=False)
        return self._frame

    def _new_column(self, name: str) -> GrowingArray:
        """A column first seen now: missing (NaN) in every row before."""
        column = GrowingArray(np.int64 if name == STEP else float, capacity=self._room)
        column.fill(self._rows, _missing(name))
        return column


# --- internals ------------------------------------------------------------------------------
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


def _parse_with_polars(block: memoryview, known: list[str]) -> Columns | None:
    """Columns, or None if the block holds something only pyarrow or json.loads can judge.

    polars reads the keys in its schema and silently drops any other, and inferring the schema
    from every row costs ~2x the parse itself. So the block is read with the columns known so far,
    then checked by _every_key_read; only a block holding a key not read yet (val/loss at the first
    eval, a series added on resume) has its keys inferred from all its rows and is read again.
    Every column is read as float64, step too: older polars versions truncate 2.5 to 2 in a
    column they inferred as integer, and put null where a value does not fit (_every_key_read
    sees that: a null without a `null` in the text).
    """
    if pl is None:
        return None
    piece = bytes(block)
    known = known or _head_names(piece)
    try:
        table = pl.read_ndjson(piece, schema=_polars_schema(known))
        if not _every_key_read(piece, table):
            inferred = pl.read_ndjson(piece, infer_schema_length=None, n_rows=0).columns
            known = known + _in_file_order(piece, [name for name in inferred if name not in set(known)])
            table = pl.read_ndjson(piece, schema=_polars_schema(known))
            if not _every_key_read(piece, table):
                return None  # a duplicated key, a ':' in a string, a null written as ': null'
        return _polars_columns(table)
    except (Exception, pl.exceptions.PanicException):  # a malformed line, a non-number, in any polars version's words
        return None


def _head_names(piece: bytes) -> list[str]:
    """The keys of the piece's first ~64 KB of lines, in order: usually all of them, for ~1 ms."""
    names = dict.fromkeys([STEP, TIME])
    for line in piece[: piece.find(b"\n", FAST_MIN_BYTES) + 1 or len(piece)].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and _is_integer(record.get(STEP)):  # as records_to_columns counts them
            names.update(dict.fromkeys(record))
    return list(names)


def _polars_schema(names: list[str]) -> dict:
    return dict.fromkeys([STEP, *names], pl.Float64)  # step first, once


def _every_key_read(piece: bytes, table: pl.DataFrame) -> bool:
    """Is every key in the piece a column of table? Each ':' must belong to a key polars read.

    A key is followed by one ':' (plus those in its name), and values here hold none: a float
    column fails on a string. Counting ':' costs ~1/15 of the parse; inferring the schema ~2x.
    Nulls read as missing, so each `"name":null` is counted by name. A ':' this cannot place
    (a new key, one inside a string) makes it False and the caller takes a slower exact path.
    """
    colons = int(np.count_nonzero(np.frombuffer(piece, np.uint8) == ord(":")))
    values = dict(zip(table.columns, table.height - np.array(table.null_count().row(0), dtype=np.int64)))
    placed = sum(int(n) * (1 + name.count(":")) for name, n in values.items())
    if colons == placed:
        return True
    # Only a column with gaps can hold nulls; a null under a key polars did not read (a new series,
    # all null so far) leaves its ':' unplaced.
    nulls = {name: piece.count(b'"' + _json_name(name) + b'":null') for name, n in values.items() if n < table.height}
    return colons == placed + sum(n * (1 + name.count(":")) for name, n in nulls.items())


def _json_name(name: str) -> bytes:
    """A key as the writer spells it inside its quotes."""
    return json.dumps(name, ensure_ascii=False)[1:-1].encode()


def _polars_columns(table: pl.DataFrame) -> Columns | None:
    if table.height == 0:
        return Columns({}, 0)
    step = table[STEP].drop_nulls()
    if not bool(((step == step.floor()) & (step.abs() < 2.0**53)).all()):
        return None  # a step of 2.5, or too big to be exact: let the line parser judge each row
    malformed = table.height - len(step)  # no step: it cannot be placed on the step axis
    if malformed:
        table = table.filter(pl.col(STEP).is_not_null())
    data = {STEP: table[STEP].cast(pl.Int64).to_numpy()}
    for name in table.columns[1:]:
        data[name] = table[name].to_numpy()  # nulls become NaN
    return Columns(data, table.height, malformed)


def _in_file_order(piece: bytes, names: list[str]) -> list[str]:
    """names in order of first appearance in the piece (polars orders an inferred schema its own way)."""
    position = {name: piece.find(b'"' + _json_name(name) + b'":') for name in names}
    return sorted(names, key=lambda name: (position[name] < 0, position[name]))  # not found (odd spacing): last


def _parse_with_pyarrow(block: memoryview) -> Columns | None:
    """Columns, or None if the block holds something only json.loads can judge."""
    try:
        table = pa_json.read_json(pa.BufferReader(pa.py_buffer(block)))
    except pa.ArrowInvalid:  # a malformed line, a value that changes type
        return None
    if table.num_rows == 0:
        return Columns({}, 0)
    if STEP not in table.column_names or not pa.types.is_integer(table.schema.field(STEP).type):
        return None  # missing or float/string steps: let the line parser judge each row
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


def _missing(name: str):
    # Steps are always present, so a zero step never shows; a series a row lacks is NaN there.
    return 0 if name == STEP else np.nan


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
