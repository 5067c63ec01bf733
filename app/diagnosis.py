"""The doctor's report for the Diagnosis page, recomputed only when the run's data changed.

The report is cached under the run's version, the same change counter behind every page's
snapshot (app.state.run_view): the doctor runs again only after the reader saw new data.

    view = state.run_view(run_id)
    report_markdown(state.run_dir_of(run_id), view.version)
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from trainer import doctor
from trainer.doctor.follow import DOCTOR_EVERY_S

# Why the two lists on the page can differ: found on a user's loop at an LR 100x too high, whose
# critical variance_collapse was in the alerts and not in the report.
READINGS = (
    "The report reads the run's files as they are now; the alerts above were raised while it trained, "
    f"as its rows arrived (a script's doctor reads at most one row of the same keys every {DOCTOR_EVERY_S * 1000:.0f} ms, "
    "and a long file is read here a row in N, as the report's last note says). On a noisy run the two readings can "
    "differ: a finding in one list and not the other was seen in one reading only."
)


@st.cache_data(max_entries=32, show_spinner="Diagnosing...")
def _report(run_dir: str, version: int) -> str:
    return doctor.to_markdown(doctor.diagnose(Path(run_dir)))


def report_markdown(run_dir: Path, version: int) -> str:
    """The doctor's report as markdown, or a message saying why there is none.

    version: the run's RunSnapshot.version; equal versions of one run directory mean equal data.
    """
    if not run_dir.is_dir():
        return f"Run {run_dir.name} no longer exists."
    try:
        return _report(str(run_dir), version)
    except Exception as e:  # noqa: BLE001 - a half-written run must not break the page
        return f"The doctor could not read this run: {type(e).__name__}: {e}"
