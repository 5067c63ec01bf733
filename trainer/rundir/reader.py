"""Read a run directory (docs/run-format.md) once, or tail it live, reading only appended bytes.

    from trainer.rundir.reader import RunReader
    run = RunReader("runs/shakespeare_char-20260101-120000")
    while True:
        snap = run.snapshot()        # reads what was appended (at most every MIN_REFRESH_S)
        print(snap.version, snap.metrics_view.tail(1))   # step, time, train/loss, ...
        time.sleep(1)

One RunReader is shared by every dashboard session (st.cache_resource, app.state). A lock makes
every read and accessor see one consistent state; snapshot(token) is what they call. It reads
only when the caller's change token (app.run_watch) moved, at most every MIN_REFRESH_S, and
otherwise hands back the same RunSnapshot without touching the disk: ten open tabs cost one read.
Each caller gets whole tables, never "lines since your last call" (sessions would steal each
other's lines). Frames from the accessors (.metrics, ...) are cheap copies that a caller may
modify without touching anyone else's. Metrics are read through their cache
(trainer.rundir.metrics_store): a reader of a ten-million-row run holds its cache's memory-mapped
segments and the rows since, and builds the whole-run frame (.metrics) only when asked.

Nothing here raises because a run is incomplete, being written, truncated on resume, or deleted:
missing files read as empty, a torn last line waits until it is completed, malformed lines are
skipped and counted, a file replaced or shrunk under us is read again from the start, and a run
directory that is gone keeps its last data (its snapshot says exists=False and why).
"""

from __future__ import annotations

import copy
import functools
import itertools
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trainer.rundir import run_format as rf
from trainer.rundir.files import file_key
from trainer.rundir.jsonl import JsonlTail
from trainer.rundir.jsonl_frame import GrowingFrame, records_to_columns
from trainer.rundir.metrics_store import MetricsStore, MetricsView
from trainer.rundir.skipped import notes as skipped_notes
from trainer.rundir.status import read_config, read_status

MIN_REFRESH_S = 0.25  # snapshot() reads at most this often, whatever the tokens say
# Versions are drawn from one counter for the whole process, so equal versions of a run directory
# mean equal data even across two readers of it (a reader evicted from a cache and made again).
_versions = itertools.count(1)
_NO_TOKEN = object()  # equal to no caller's token: the first snapshot() always reads


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a RunReader knows about one run, taken at one instant.

    exists is False when the run directory is gone (the tables then hold the last data read) or
    its id was refused (empty tables); error says why, or what went wrong reading. A snapshot is
    shared by every caller that asked with the same token: read its tables, never modify them.
    metrics_view is the metrics as charts read them (buckets, the newest rows), in bounded memory
    for a run of any length; metrics is every row as a DataFrame, built on first use.
    """

    run_id: str
    exists: bool = True
    metrics_view: MetricsView = field(default_factory=lambda: MetricsView([], ["step", "time"]))
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    grads: pd.DataFrame = field(default_factory=pd.DataFrame)
    status: dict | None = None
    config: dict | None = None
    version: int = 0  # the reader's version: equal versions of one run directory mean equal data
    error: str = ""
    skipped: tuple[str, ...] = ()  # what could not be read and was left out, one sentence each (rundir.skipped)

    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        """Every metrics row (the whole run in memory: a page draws from metrics_view instead)."""
        return self.metrics_view.frame()


class RunReader:
    """Live view of one run directory; a read takes only what was appended since the last one.

    metrics: step, time, then one float column per series in order of first appearance (NaN where
    a row has no value or logged a non-finite one). grads: step, time, "norms/<param>",
    "update_ratios/<param>". samples and events: one row per record, nested values kept as objects.
    The constructor reads the whole run (the cold read); refresh() reads at once, snapshot() when
    the run may have changed.
    """

    def __init__(self, run_dir: str | Path, min_refresh_s: float = MIN_REFRESH_S):
        self.run_dir = Path(run_dir)
        self.min_refresh_s = min_refresh_s
        self._lock = threading.RLock()
        self._tails = {name: JsonlTail(self.run_dir / name) for name in rf.JSONL_FILES if name != rf.METRICS_FILE}
        self._metrics = MetricsStore(self.run_dir / rf.METRICS_FILE)
        self._grads = GrowingFrame()
        self._samples = _RecordFrame()
        self._events = _RecordFrame()
        self._status: dict | None = None
        self._config: dict | None = None
        self._unreadable = {rf.STATUS_FILE: False, rf.CONFIG_FILE: False}  # there, but not readable
        self._file_keys: dict[str, tuple | None] = {rf.STATUS_FILE: None, rf.CONFIG_FILE: None}
        self.version = 0  # changes with every refresh that changed anything (see _versions)
        # What snapshot() knows: the token it last read for, when, and what it found.
        self._token: object = _NO_TOKEN
        self._last_read = float("-inf")
        self._exists, self._error = True, ""
        self._snapshot: RunSnapshot | None = None
        self.reads = 0  # reads snapshot() made (tests and benchmarks count them)
        self.refresh_seconds = 0.0  # how long the last of them took
        self.refresh()

    def refresh(self) -> bool:
        """Read what was appended or replaced since the last refresh; True if anything changed."""
        with self._lock:
            changed = self._metrics.refresh()
            changed |= self._refresh_grads()
            changed |= self._refresh_records(rf.SAMPLES_FILE, self._samples)
            changed |= self._refresh_records(rf.EVENTS_FILE, self._events)
            changed |= self._refresh_status()
            changed |= self._refresh_config()
            if changed:
                self.version = next(_versions)
            return changed

    def snapshot(self, token: Hashable | None = None) -> RunSnapshot:
        """The newest snapshot, reading first only where the run may have changed. Never raises.

        token: the caller's change token for the run's files (app.run_watch); the token of the
        last read means nothing changed, and the same snapshot comes back without any disk I/O.
        None means unknown: read. Reads are at least min_refresh_s apart; a call in between gets
        the last snapshot, and its token is not taken, so the next call reads.
        """
        with self._lock:
            fresh = token is not None and token == self._token
            if not fresh and time.monotonic() - self._last_read >= self.min_refresh_s:
                self._token = token  # taken before reading: a write during the read shows next time
                self._read()
            return self._current()

    @property
    def metrics(self) -> pd.DataFrame:
        """Every metrics row as a DataFrame (the whole run in memory; charts use metrics_view)."""
        with self._lock:
            return self._metrics.view().frame().copy(deep=False)

    @property
    def metrics_view(self) -> MetricsView:
        with self._lock:
            return self._metrics.view()

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
            return {rf.METRICS_FILE: self._metrics.malformed} | {
                name: tail.malformed for name, tail in self._tails.items()
            }

    @property
    def skipped(self) -> tuple[str, ...]:
        """What was left out, one sentence each: unreadable lines, the incomplete last line of a run
        that is no longer live, a status.json or config.yaml that cannot be read."""
        with self._lock:
            live = (self._status or {}).get("state") in rf.LIVE_STATES
            tails = {rf.METRICS_FILE: self._metrics} | self._tails
            torn = {} if live else {name: tail.pending for name, tail in tails.items()}
            return skipped_notes(
                self.malformed, torn, self._unreadable[rf.STATUS_FILE], self._unreadable[rf.CONFIG_FILE]
            )

    @property
    def resets(self) -> int:
        """How many times a file was replaced or shrank and was read again from the start."""
        with self._lock:
            return self._metrics.resets + sum(tail.resets for tail in self._tails.values())

    # --- internals --------------------------------------------------------------------------
    def _read(self) -> None:
        """snapshot()'s read: whether the run directory is there, then what was appended."""
        self.reads += 1
        self._last_read = time.monotonic()
        started = time.perf_counter()
        run_id = self.run_dir.name
        if not self.run_dir.is_dir():
            self._exists = False
            self._error = f"run {run_id!r} no longer exists under {self.run_dir.parent}"
            return
        self._exists, self._error = True, ""
        try:
            self.refresh()
        except OSError as e:  # deleted or renamed between the check and the read
            self._error = f"could not read run {run_id!r}: {e}"
        self.refresh_seconds = time.perf_counter() - started

    def _current(self) -> RunSnapshot:
        """The snapshot of the state now: the last one again if nothing it holds has changed."""
        snap, notes = self._snapshot, self.skipped
        now = (self.version, self._exists, self._error, notes)
        if snap is None or (snap.version, snap.exists, snap.error, snap.skipped) != now:
            snap = self._snapshot = RunSnapshot(
                self.run_dir.name,
                exists=self._exists,
                metrics_view=self.metrics_view,
                samples=self.samples,
                events=self.events,
                grads=self.grads,
                status=self.status,
                config=self.config,
                version=self.version,
                error=self._error,
                skipped=notes,
            )
        return snap

    # --- internals --------------------------------------------------------------------------
    def _refresh_grads(self) -> bool:
        # Nested records need json.loads; they are few and wide.
        tail, frame = self._tails[rf.GRADS_FILE], self._grads
        records = tail.poll()
        if tail.was_reset:
            frame.clear()
        columns = records_to_columns(records, flatten=True)
        tail.malformed += columns.malformed
        frame.append(columns)
        return tail.was_reset or bool(records)

    def _refresh_records(self, name: str, frame: _RecordFrame) -> bool:
        tail = self._tails[name]
        records = tail.poll()
        if tail.was_reset:
            frame.clear()
        placed = [r for r in records if type(r.get("step")) is int]  # every record has one (run-format.md)
        tail.malformed += len(records) - len(placed)
        frame.extend(placed)
        return tail.was_reset or bool(records)

    def _refresh_status(self) -> bool:
        key = file_key(self.run_dir / rf.STATUS_FILE)
        if key is None or key == self._file_keys[rf.STATUS_FILE]:
            return False  # unchanged, or gone (deleted run): keep the last status
        self._file_keys[rf.STATUS_FILE] = key
        status = read_status(self.run_dir)
        self._unreadable[rf.STATUS_FILE] = status is None
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
        self._unreadable[rf.CONFIG_FILE] = config is None
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


def read_metrics(path: str | Path, use_cache: bool = True) -> pd.DataFrame:
    """metrics.jsonl (or any jsonl of numeric rows with "step") as a DataFrame, through its cache
    (made or extended beside it); use_cache=False parses every line and leaves no cache."""
    store = MetricsStore(path, use_cache=use_cache)
    store.refresh()
    return store.view().frame()
