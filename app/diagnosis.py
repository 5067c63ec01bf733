"""The doctor's report for the Diagnosis page, recomputed only when the run's files change."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from trainer.rundir import run_format as rf


def files_signature(run_dir: Path) -> tuple:
    """(name, size, mtime) of the files the doctor reads: changes whenever the run does."""
    sig = []
    for name in (rf.METRICS_FILE, rf.GRADS_FILE, rf.SAMPLES_FILE, rf.EVENTS_FILE, rf.STATUS_FILE, rf.CONFIG_FILE):
        try:
            st_ = (run_dir / name).stat()
            sig.append((name, st_.st_size, st_.st_mtime_ns))
        except OSError:
            sig.append((name, -1, 0))
    return tuple(sig)


@st.cache_data(max_entries=32, show_spinner="Diagnosing...")
def _report(run_dir: str, signature: tuple) -> str:
    from trainer import doctor

    return doctor.to_markdown(doctor.diagnose(Path(run_dir)))


def report_markdown(run_dir: Path) -> str:
    """The doctor's report as markdown, or a message saying why there is none."""
    if not run_dir.is_dir():
        return f"Run {run_dir.name} no longer exists."
    try:
        return _report(str(run_dir), files_signature(run_dir))
    except ImportError:
        return "The doctor (trainer.doctor) is not installed in this checkout."
    except Exception as e:  # noqa: BLE001 - a half-written run must not break the page
        return f"The doctor could not read this run: {type(e).__name__}: {e}"
