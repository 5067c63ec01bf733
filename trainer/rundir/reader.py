"""Read a run directory (docs/run-format.md) once, or tail it live, reading only appended bytes.

    from trainer.rundir.reader import RunReader
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
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trainer.rundir import run_format as rf
from trainer.rundir.files import file_key
from trainer.rundir.jsonl import JsonlTail
from trainer.rundir.jsonl_frame import GrowingFrame, parse_numeric_lines, records_to_columns
from trainer.rundir.status import read_config, read_status


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
