"""The columnar cache of a metrics.jsonl: what a reader parsed, kept beside it for the next open.

    runs/<id>/metrics.cache/meta.json                        version, the bytes covered, segments
    runs/<id>/metrics.cache/rows-<first row>-<tag>.arrow      Arrow IPC file: step, time, series
    runs/<id>/metrics.cache/summary-<first row>-<tag>.arrow   its min/max buckets (trainer.rundir.summary)

JSON lines stay the contract: the cache is disposable, and anything wrong with it means "parse
the JSON lines again", never an error. meta.json records the cache format version
(run_format.METRICS_CACHE_VERSION), the byte offset it covers (always a line end) and the
identity of the file it was read from: device and inode, a hash of its first bytes and the
bytes just before the offset. A cache of another version, or of a file that was replaced (a
resume's os.replace: a new inode), truncated below the offset or rewritten in place (its head
or the bytes at the offset changed) is deleted and rebuilt; a file that only grew is extended.

Every file is written under a temporary name and renamed, and meta.json last, so a crash or a
second reader sees the old cache or the new one, never half of one. A segment file is never
changed once written; meta.json is replaced. A read-only run directory or a full disk means no
cache: segments are then kept in memory, and the run opens as it always did.

    cache = MetricsCache(run_dir / "metrics.jsonl")
    loaded = cache.load()                 # None: no usable cache (it was cleared)
    segment = cache.append(columns, offset=..., malformed=...)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import JsonlTail
from trainer.rundir.summary import Buckets, summary_index, summary_table

HEAD_BYTES = 4096  # hashed from the start of the file: a rewrite from byte 0 changes it
END_BYTES = 64  # kept from just before the covered offset: a rewrite in place there changes them
STEP, TIME = "step", "time"


def cache_dir(source: Path) -> Path:
    """metrics.jsonl -> metrics.cache (run_format.METRICS_CACHE_DIR), beside it."""
    return source.with_name(source.stem + ".cache")


@dataclass
class Segment:
    """Consecutive rows of the file in columns (memory-mapped when read from the cache), with their
    min/max buckets. Never changed once made: charts may keep what they derive from one."""

    table: pa.Table
    summary: dict[tuple[str, int], Buckets]
    meta: dict = field(default_factory=dict)  # its entry in meta.json (empty when only in memory)
    derived: dict = field(default_factory=dict)  # merged buckets charts asked for, by (series, size)

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> np.ndarray | None:
        """The column as numpy (zero-copy: NaN, not null, marks a missing value), None if absent."""
        if name not in self.table.column_names:
            return None
        column = self.table.column(name)
        return column.chunk(0).to_numpy() if column.num_chunks == 1 else column.to_numpy()


@dataclass
class Loaded:
    """A cache that matches the file: its segments and what they cover."""

    segments: list[Segment]
    offset: int
    malformed: int


class MetricsCache:
    """The cache directory of one jsonl file of numeric rows (metrics.jsonl)."""

    def __init__(self, source: str | Path):
        self.source = Path(source)
        self.dir = cache_dir(self.source)
        self.writable = True  # False after a write failed (read-only directory, full disk)
        self._entries: list[dict] = []  # meta.json's segments, as last loaded or written

    # --- reading ---------------------------------------------------------------------------
    def load(self) -> Loaded | None:
        """The cache's segments if they match the file as it is now; else None, and the cache is
        cleared (rebuilt by the appends that follow). Never raises."""
        try:
            meta = json.loads((self.dir / rf.METRICS_CACHE_META).read_bytes())
        except (OSError, ValueError):
            self.clear()
            return None
        try:
            if not self._matches(meta):
                self.clear()
                return None
            segments = [self._read_segment(entry) for entry in meta["segments"]]
        except Exception:  # a missing or damaged segment, files of another shape: the
            self.clear()  # cache is disposable, so anything wrong with it means a rebuild, never an error
            return None
        self._entries = list(meta["segments"])
        return Loaded(segments, int(meta["offset"]), int(meta.get("malformed", 0)))

    def _matches(self, meta: dict) -> bool:
        if not isinstance(meta, dict) or meta.get("version") != rf.METRICS_CACHE_VERSION:
            return False
        source, offset = meta["source"], int(meta["offset"])
        with open(self.source, "rb") as f:
            stat = os.fstat(f.fileno())
            if [stat.st_dev, stat.st_ino] != source["identity"] or stat.st_size < offset:
                return False
            return _fingerprint(f, offset) == source["fingerprint"]

    def _read_segment(self, entry: dict) -> Segment:
        table = _read_table(self.dir / entry["rows_file"])
        summary = summary_index(_read_table(self.dir / entry["summary_file"]))
        if table.num_rows != entry["rows"]:
            raise ValueError("segment length differs from meta.json")
        return Segment(table, summary, entry)

    # --- writing ---------------------------------------------------------------------------
    def append(self, columns: dict[str, np.ndarray], read: JsonlTail, malformed: int, first_row: int) -> Segment:
        """A new segment of rows (step, time, then series: equal-length arrays) that brings the
        cache to the offset `read` (the tail that read them) has reached. Written to disk when it
        can be; kept in memory either way."""
        table = pa.table(columns)
        series = {name: values for name, values in columns.items() if name not in (STEP, TIME)}
        summary_file = summary_table(series, columns[STEP], columns[TIME])
        segment = Segment(table, summary_index(summary_file))
        if not self.writable:
            return segment
        tag = f"{first_row:012d}-{uuid.uuid4().hex[:8]}"
        entry = {"rows_file": f"rows-{tag}.arrow", "summary_file": f"summary-{tag}.arrow", "rows": table.num_rows}
        try:
            self.dir.mkdir(exist_ok=True)
            _write_table(self.dir / entry["rows_file"], table)
            _write_table(self.dir / entry["summary_file"], summary_file)
            # Memory-mapped from now on: its pages belong to the page cache, not to this process.
            segment = self._read_segment(entry)
            offset = read.offset
            with open(self.source, "rb") as f:
                # The identity of the file the rows were read from, not of the one there now: a file
                # replaced since (a resume) then fails the next load's check.
                source = {"identity": list(read.identity or ()), "fingerprint": _fingerprint(f, offset)}
            meta = {
                "version": rf.METRICS_CACHE_VERSION,
                "source": source,
                "offset": offset,
                "malformed": malformed,
                "segments": [*self._entries, entry],
            }
            _write_bytes(self.dir / rf.METRICS_CACHE_META, json.dumps(meta).encode())
        except (OSError, pa.ArrowException):
            self.writable = False  # read-only or full: no cache, the rows stay in memory
            return segment
        self._entries.append(entry)
        return segment

    def clear(self) -> None:
        """Delete the cache (a stale one, or before a rebuild); a directory we cannot change stays."""
        self._entries = []
        if self.dir.is_dir():
            shutil.rmtree(self.dir, ignore_errors=True)


def _fingerprint(f, offset: int) -> str:
    """A hash of the file's first HEAD_BYTES and of the END_BYTES before offset (within offset)."""
    fd = f.fileno()
    head = os.pread(fd, min(HEAD_BYTES, offset), 0)
    end = os.pread(fd, min(END_BYTES, offset), max(0, offset - END_BYTES))
    return hashlib.sha256(head + b"|" + end).hexdigest()


def _read_table(path: Path) -> pa.Table:
    """An IPC file's table, memory-mapped: its buffers are the file's pages, which count against
    this process only once read (a chart reads a few buckets of a summary, not the rows). The file
    is closed at once (a mapping outlives its descriptor): no descriptor held per segment."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _write_table(path: Path, table: pa.Table) -> None:
    tmp = _temp_name(path)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = _temp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
