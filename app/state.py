"""Where the dashboard gets run data: one shared incremental reader per run directory.

st.cache_resource keeps one RunReader per run for the whole server (every tab and page), so a
refresh reads only the bytes appended since the last one. Whether it reads at all is decided by
the process's file watcher (app.run_watch): a refresh that finds none of the run's files changed
does no file I/O and hands back the same snapshot. A lock serialises refreshes, and each caller
gets a snapshot of whole tables, never "lines since your last call" (sessions would steal each
other's lines). Refreshes closer together than MIN_REFRESH_S are served from the last snapshot:
ten open tabs cost one read.

    view = run_view("shakespeare-20261123-142501")
    view.metrics["train/loss"]
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from app import run_watch, timing
from app.run_list import RunList
from trainer import runs
from trainer.errors import RunIdError
from trainer.rundir import run_format as rf

MIN_REFRESH_S = 0.25


def runs_dir() -> Path:
    """The runs directory, decided in one place (trainer.runs)."""
    return runs.default_runs_dir()


@dataclass
class RunView:
    """A consistent snapshot of one run. Tables are shared: read them, never modify them."""

    run_id: str
    exists: bool
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    grads: pd.DataFrame = field(default_factory=pd.DataFrame)
    status: dict | None = None
    config: dict | None = None
    version: int = 0  # the reader's change counter: equal versions mean equal data
    error: str = ""


class SharedReader:
    """A RunReader behind a lock: it reads when the run's change token moved, at most every
    MIN_REFRESH_S, and otherwise hands back the last view without touching the disk."""

    def __init__(self, run_dir: Path):
        from trainer.rundir.reader import RunReader

        self.run_dir = run_dir
        self._lock = threading.Lock()
        self._token: tuple | None = None
        self._view: RunView | None = None
        self._last_refresh = 0.0
        self.reads = 0  # refreshes that touched the disk (tests and benchmarks read it)
        self.refresh_seconds = 0.0  # how long the last real refresh took
        with timing.logged("load"):  # the cold read of the whole run
            self._reader = RunReader(run_dir)

    def view(self, token: tuple | None = None) -> RunView:
        """The newest snapshot; token None means "unknown": read (subject to the throttle)."""
        with self._lock:
            if self._view is not None:
                if token is not None and token == self._token:
                    return self._view  # nothing changed on disk
                if time.monotonic() - self._last_refresh < MIN_REFRESH_S:
                    return self._view  # the token stays old, so the next call reads
            self._token = token  # taken before reading: a write during the read shows next time
            self._view = self._read()
            return self._view

    def _read(self) -> RunView:
        run_id = self.run_dir.name
        self.reads += 1
        started = time.perf_counter()
        self._last_refresh = time.monotonic()
        if not self.run_dir.is_dir():
            return RunView(run_id, exists=False, error=f"run {run_id!r} no longer exists under {self.run_dir.parent}")
        error = ""
        try:
            self._reader.refresh()
        except OSError as e:  # deleted or renamed between the check and the read
            error = f"could not read run {run_id!r}: {e}"
        self.refresh_seconds = time.perf_counter() - started
        previous = self._view
        if previous is not None and previous.exists and previous.version == self._reader.version:
            if previous.error == error:
                return previous
            return dataclasses.replace(previous, error=error)
        snap = self._reader.snapshot()
        return RunView(
            run_id,
            exists=True,
            metrics=_frame(snap.metrics),
            samples=_frame(snap.samples),
            events=_frame(snap.events),
            grads=_frame(snap.grads),
            status=snap.status,
            config=snap.config,
            version=snap.version,
            error=error,
        )


def _frame(value) -> pd.DataFrame:
    return value if isinstance(value, pd.DataFrame) else pd.DataFrame()


@st.cache_resource(max_entries=128, show_spinner=False)
def shared_reader(run_dir: str) -> SharedReader:
    """The process's one reader of run_dir (an absolute path)."""
    return SharedReader(Path(run_dir))


def run_dir_of(run_id: str) -> Path:
    """The run's directory; the id is validated so a browser-supplied id cannot escape runs/."""
    return rf.run_path(runs_dir(), run_id)


def watcher() -> run_watch.RunsWatcher:
    """The process's file watcher for the runs directory (one observer, shared by all sessions)."""
    return run_watch.watcher_for(runs_dir())


def run_view(run_id: str) -> RunView:
    """The newest snapshot of run_id (missing runs and bad ids give exists=False, never raise)."""
    try:
        path = run_dir_of(run_id)
    except RunIdError as e:
        return RunView(str(run_id), exists=False, error=str(e))
    token = watcher().token(path.name)
    return shared_reader(os.path.abspath(path)).view(token)


def note_change(run_id: str | None) -> None:
    """After the app started, forked, stopped or resumed run_id: show it on the very next rerun."""
    if run_id:
        watcher().note_change(run_id)


@st.cache_resource(max_entries=8, show_spinner=False)
def _run_list(runs_dir: str) -> RunList:
    return RunList(Path(runs_dir))


def list_run_infos() -> list[runs.RunInfo]:
    """Every run, newest first (re-read only where files changed); a vanished runs directory has none."""
    return _run_list(str(runs_dir())).infos(watcher())


def run_info(run_id: str) -> runs.RunInfo | None:
    """One run's row of the runs table (state with crash detection, step, alerts), or None."""
    return next((info for info in list_run_infos() if info.run_id == run_id), None)


def run_ids() -> list[str]:
    return [info.run_id for info in list_run_infos()]
