"""Read a run directory (docs/run-format.md) once, or tail it live, reading only appended bytes.

    from trainer.reader import RunReader
    run = RunReader("runs/shakespeare_char-20260101-120000")
    while True:
        if run.refresh():
            print(run.metrics.tail(1))   # step, time, train/loss, ...
        time.sleep(1)

One RunReader can be shared by many dashboard sessions (st.cache_resource): a lock makes refresh()
and every accessor see one consistent state, and frames are handed out as cheap copies that a
caller may modify without touching anyone else's.

Nothing here raises because a run is incomplete, being written, truncated on resume, or deleted:
missing files read as empty, a torn last line waits until it is completed, malformed lines are
skipped and counted, and a file replaced or shrunk under us is read again from the start.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from trainer import run_format as rf
from trainer.jsonl_frame import GrowingFrame, parse_numeric_lines, records_to_columns
from trainer.runs.state import read_status


class JsonlTail:
    """Incremental reader of one jsonl file: each poll returns only records completed since the last.

    It remembers its byte offset and the file's identity: (st_dev, st_ino), plus its first bytes
    because a deleted file's inode is often reused at once by the next file created. When the file
    was replaced (a resume rewrites metrics.jsonl through os.replace), shrank, or was rewritten in
    place (its head changed, or the byte before the offset is no longer a newline), it starts over
    from byte 0: `was_reset` is True after that poll and `resets` counts it, so a caller knows to
    drop what it held.
    """

    HEAD_BYTES = 64

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.malformed = 0  # lines of the current file that were not a JSON object
        self.resets = 0
        self.was_reset = False  # did the last poll start over?
        self._identity: tuple[int, int] | None = None
        self._head = b""  # the file's first bytes (up to HEAD_BYTES) as last read

    def poll(self) -> list[dict]:
        """New complete records, in file order; malformed lines are skipped and counted."""
        records = []
        for line in self.poll_block().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:  # also UnicodeDecodeError
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                self.malformed += 1
        return records

    def poll_block(self) -> bytes:
        """The raw bytes of the new complete lines (ending with a newline), b"" if none."""
        self.was_reset = False
        try:
            f = open(self.path, "rb")
        except OSError:  # missing, run directory deleted or renamed: keep what we had
            return b""
        with f:
            stat = os.fstat(f.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if self._identity is not None and (identity != self._identity or self._rewritten(f, stat.st_size)):
                self._start_over()
            self._identity = identity
            if stat.st_size <= self.offset:
                return b""
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end == 0:
            return b""  # only a torn line so far
        if len(self._head) < self.HEAD_BYTES:
            self._head = (self._head + data[: self.HEAD_BYTES])[: min(self.HEAD_BYTES, self.offset + end)]
        self.offset += end
        return data if end == len(data) else data[:end]

    def _rewritten(self, f, size: int) -> bool:
        if size < self.offset:
            return True
        if self.offset == 0:
            return False
        fd = f.fileno()
        return os.pread(fd, 1, self.offset - 1) != b"\n" or os.pread(fd, len(self._head), 0) != self._head

    def _start_over(self) -> None:
        self.offset = 0
        self._head = b""
        self.malformed = 0
        self.resets += 1
        self.was_reset = True


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a RunReader knows, taken at one instant."""

    run_dir: Path
    version: int
    metrics: pd.DataFrame
    samples: pd.DataFrame
    events: pd.DataFrame
    grads: pd.DataFrame
    status: dict | None
    config: dict | None


class RunReader:
    """Live view of one run directory; refresh() reads only what was appended since the last call.

    metrics: step, time, then one float column per series in order of first appearance (NaN where
    a row has no value or logged a non-finite one). grads: step, time, "norms/<param>",
    "update_ratios/<param>". samples and events: one row per record, nested values kept as objects.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._lock = threading.RLock()
        self._tails = {
            name: JsonlTail(self.run_dir / name)
            for name in (rf.METRICS_FILE, rf.GRADS_FILE, rf.SAMPLES_FILE, rf.EVENTS_FILE)
        }
        self._metrics = GrowingFrame()
        self._grads = GrowingFrame()
        self._samples = _RecordFrame()
        self._events = _RecordFrame()
        self._status: dict | None = None
        self._config: dict | None = None
        self._file_keys: dict[str, tuple | None] = {rf.STATUS_FILE: None, rf.CONFIG_FILE: None}
        self.version = 0  # bumped by every refresh that changed anything
        self.refresh()

    def refresh(self) -> bool:
        """Read what was appended or replaced since the last refresh; True if anything changed."""
        with self._lock:
            changed = self._refresh_numeric(rf.METRICS_FILE, self._metrics, flatten=False)
            changed |= self._refresh_numeric(rf.GRADS_FILE, self._grads, flatten=True)
            changed |= self._refresh_records(rf.SAMPLES_FILE, self._samples)
            changed |= self._refresh_records(rf.EVENTS_FILE, self._events)
            changed |= self._refresh_status()
            changed |= self._refresh_config()
            if changed:
                self.version += 1
            return changed

    @property
    def metrics(self) -> pd.DataFrame:
        with self._lock:
            return self._metrics.frame().copy(deep=False)

    @property
    def grads(self) -> pd.DataFrame:
        with self._lock:
            return self._grads.frame().copy(deep=False)

    @property
    def samples(self) -> pd.DataFrame:
        with self._lock:
            return self._samples.frame().copy(deep=False)

    @property
    def events(self) -> pd.DataFrame:
        with self._lock:
            return self._events.frame().copy(deep=False)

    @property
    def alerts(self) -> list[dict]:
        """The alert events as dicts (code, severity, step, message, evidence, remedy), in order."""
        with self._lock:
            return [copy.deepcopy(e) for e in self._events.records if e.get("kind") == "alert"]

    @property
    def status(self) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._status)

    @property
    def config(self) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._config)

    @property
    def malformed(self) -> dict[str, int]:
        """Malformed lines skipped so far, per jsonl file."""
        with self._lock:
            return {name: tail.malformed for name, tail in self._tails.items()}

    @property
    def resets(self) -> int:
        """How many times a file was replaced or shrank and was read again from the start."""
        with self._lock:
            return sum(tail.resets for tail in self._tails.values())

    def snapshot(self) -> RunSnapshot:
        with self._lock:
            return RunSnapshot(
                self.run_dir,
                self.version,
                self.metrics,
                self.samples,
                self.events,
                self.grads,
                self.status,
                self.config,
            )

    # --- internals --------------------------------------------------------------------------
    def _refresh_numeric(self, name: str, frame: GrowingFrame, flatten: bool) -> bool:
        tail = self._tails[name]
        if flatten:  # nested records (grads) need json.loads; they are few and wide
            records = tail.poll()
            if tail.was_reset:
                frame.clear()
            columns = records_to_columns(records, flatten=True)
            tail.malformed += columns.malformed
            frame.append(columns)
            return tail.was_reset or bool(records)
        block = tail.poll_block()
        if tail.was_reset:
            frame.clear()
        pieces = parse_numeric_lines(block, known=frame.names())
        tail.malformed += sum(columns.malformed for columns in pieces)
        frame.extend(pieces)
        return tail.was_reset or bool(block)

    def _refresh_records(self, name: str, frame: _RecordFrame) -> bool:
        tail = self._tails[name]
        records = tail.poll()
        if tail.was_reset:
            frame.clear()
        frame.extend(records)
        return tail.was_reset or bool(records)

    def _refresh_status(self) -> bool:
        key = file_key(self.run_dir / rf.STATUS_FILE)
        if key is None or key == self._file_keys[rf.STATUS_FILE]:
            return False  # unchanged, or gone (deleted run): keep the last status
        self._file_keys[rf.STATUS_FILE] = key
        status = read_status(self.run_dir)
        if status is None or status == self._status:
            return False
        self._status = status
        return True

    def _refresh_config(self) -> bool:
        key = file_key(self.run_dir / rf.CONFIG_FILE)
        if key is None or key == self._file_keys[rf.CONFIG_FILE]:
            return False
        self._file_keys[rf.CONFIG_FILE] = key
        config = read_config(self.run_dir)
        if config is None or config == self._config:
            return False
        self._config = config
        return True


class _RecordFrame:
    """Records kept as dicts; the DataFrame is rebuilt only when asked after a change."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.records: list[dict] = []
        self._frame: pd.DataFrame | None = None

    def extend(self, records: list[dict]) -> None:
        if records:
            self.records.extend(records)
            self._frame = None

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame(self.records) if self.records else pd.DataFrame(columns=["step", "time"])
        return self._frame


def read_metrics(path: str | Path) -> pd.DataFrame:
    """metrics.jsonl (or any jsonl of numeric rows with "step") as a DataFrame, in one fast pass."""
    frame = GrowingFrame()
    frame.extend(parse_numeric_lines(JsonlTail(path).poll_block()))
    return frame.frame()


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete records of a jsonl file; malformed lines skipped, a missing file is empty."""
    return JsonlTail(path).poll()


def read_config(run_dir: str | Path) -> dict | None:
    """config.yaml as a dict (yaml.safe_load: plain data only), or None if missing or unreadable."""
    try:
        config = yaml.safe_load((Path(run_dir) / rf.CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def file_key(path: Path) -> tuple | None:
    """What changes when a file changes (replaced, appended to, touched): inode, mtime and size;
    None if it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
