"""Where the dashboard gets run data: one shared incremental reader per run directory.

st.cache_resource keeps one RunReader per run for the whole server (every tab and page), so a
refresh reads only the bytes appended since the last one. A lock serialises refreshes, and each
caller gets a snapshot of whole tables, never "lines since your last call" (sessions would
steal each other's lines). Refreshes closer together than MIN_REFRESH_S are served from the
last snapshot: ten open tabs cost one read.

    view = run_view("shakespeare-20261123-142501")
    view.metrics["train/loss"]
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from trainer import run_format as rf
from trainer import runs
from trainer.errors import RunIdError

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
    """A RunReader behind a lock, refreshed at most every MIN_REFRESH_S."""

    def __init__(self, run_dir: Path):
        from trainer.reader import RunReader

        self.run_dir = run_dir
        self._reader = RunReader(run_dir)
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        self.refresh_seconds = 0.0  # how long the last real refresh took (shown on System)

    def view(self) -> RunView:
        run_id = self.run_dir.name
        with self._lock:
            if not self.run_dir.is_dir():
                return RunView(
                    run_id, exists=False, error=f"run {run_id!r} no longer exists under {self.run_dir.parent}"
                )
            error = ""
            if time.monotonic() - self._last_refresh >= MIN_REFRESH_S:
                started = time.perf_counter()
                try:
                    self._reader.refresh()
                except OSError as e:  # deleted or renamed between the check and the read
                    error = f"could not read run {run_id!r}: {e}"
                self.refresh_seconds = time.perf_counter() - started
                self._last_refresh = time.monotonic()
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
def _shared_reader(run_dir: str) -> SharedReader:
    return SharedReader(Path(run_dir))


def run_dir_of(run_id: str) -> Path:
    """The run's directory; the id is validated so a browser-supplied id cannot escape runs/."""
    return rf.run_path(runs_dir(), run_id)


def run_view(run_id: str) -> RunView:
    """The newest snapshot of run_id (missing runs and bad ids give exists=False, never raise)."""
    try:
        path = run_dir_of(run_id)
    except RunIdError as e:
        return RunView(str(run_id), exists=False, error=str(e))
    if not path.is_dir():
        return RunView(run_id, exists=False, error=f"run {run_id!r} does not exist under {path.parent}")
    return _shared_reader(str(path.resolve())).view()


def list_run_infos() -> list[runs.RunInfo]:
    """Every run, newest first; a runs directory that vanished has none."""
    try:
        return runs.list_runs(runs_dir())
    except OSError:
        return []


def run_ids() -> list[str]:
    return [info.run_id for info in list_run_infos()]
