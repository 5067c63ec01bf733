"""Where the dashboard gets run data: one shared incremental reader per run directory.

st.cache_resource keeps one RunReader (trainer.rundir.reader) per run for the whole server (every
tab and page), so a read takes only the bytes appended since the last one. Whether it reads at
all is decided by the process's file watcher (app.run_watch): run_view hands the run's change
token to the reader, which reads only when it moved (and at most every MIN_REFRESH_S), and
otherwise returns the same snapshot without any file I/O.

    view = run_view("shakespeare-20261123-142501")   # a RunSnapshot
    view.metrics["train/loss"]
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app import run_watch, timing
from app.run_list import RunList
from trainer import runs
from trainer.errors import RunIdError
from trainer.rundir import run_format as rf
from trainer.rundir.reader import RunReader, RunSnapshot


def runs_dir() -> Path:
    """The runs directory, decided in one place (trainer.runs)."""
    return runs.default_runs_dir()


@st.cache_resource(max_entries=128, show_spinner=False)
def run_reader(run_dir: str) -> RunReader:
    """The process's one reader of run_dir (an absolute path); made with the cold read of the run."""
    with timing.logged("load"):
        return RunReader(Path(run_dir))


def run_dir_of(run_id: str) -> Path:
    """The run's directory; the id is validated so a browser-supplied id cannot escape runs/."""
    return rf.run_path(runs_dir(), run_id)


def watcher() -> run_watch.RunsWatcher:
    """The process's file watcher for the runs directory (one observer, shared by all sessions)."""
    return run_watch.watcher_for(runs_dir())


def run_view(run_id: str) -> RunSnapshot:
    """The newest snapshot of run_id (missing runs and bad ids give exists=False, never raise)."""
    try:
        path = run_dir_of(run_id)
    except RunIdError as e:
        return RunSnapshot(str(run_id), exists=False, error=str(e))
    token = watcher().token(path.name)
    return run_reader(os.path.abspath(path)).snapshot(token)


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
