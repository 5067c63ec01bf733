"""Remedy trials on the dashboard: the Diagnosis page's "Try the remedies" button and the verdict
table the Diagnosis and Compare pages show (trainer/runs/trials.py does the work).

    trial_view.try_button(run_id)          # starts the trials of run_id's most serious alert
    trial_view.verdicts(group)             # per trial: does the code still fire, losses vs the control
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import layout, state
from trainer.errors import TrainerError
from trainer.runs import trials

COLUMNS = {
    "run_id": "run",
    "role": "role",
    "start": "start",
    "change": "change",
    "state": "state",
    "step": "step",
    "fires": "code fires",
    "train_loss": "train loss",
    "val_loss": "val loss",
    "verdict": "verdict",
}


def report_frame(rows: list[trials.TrialRow]) -> pd.DataFrame:
    """The report as a table: one row per trial, the controls first."""
    frame = pd.DataFrame([r.as_dict() for r in rows], columns=list(COLUMNS)).rename(columns=COLUMNS)
    frame["code fires"] = frame["code fires"].map({True: "yes", False: "no"}).fillna("-")
    return frame


def try_button(run_id: str, off: str | None = None) -> None:
    """Start the trials of run_id; the outcome (or the one-line refusal) shows on the next rerun.
    off: why the button is disabled (a script's run: trials rerun our trainer's runs only)."""
    if not st.button(
        "Try the remedies",
        key="try_remedies",
        icon=":material/science:",
        help=off or "one short run per config remedy plus a control, same seed and steps",
        disabled=off is not None,
    ):
        return
    try:
        group = trials.start_trials(state.runs_dir(), run_id)
    except TrainerError as e:
        st.session_state["try_remedies_error"] = str(e)
    else:
        for trial in group.trials:
            state.note_change(trial.run_id)
        st.session_state["flash"] = (
            f"Started {len(group.trials)} trials of {group.code} ({group.steps} steps each): "
            + ", ".join(t.run_id for t in group.trials)
        )
    st.rerun()


def refusal() -> None:
    """The last Try-the-remedies refusal, once."""
    message = st.session_state.pop("try_remedies_error", None)
    if message:
        st.error(message, icon=":material/error:")


def verdicts(group: str) -> list[str]:
    """Show group's verdict table; returns its run ids (for charts side by side)."""
    try:
        rows = trials.report(state.runs_dir(), group)
    except TrainerError as e:
        st.warning(str(e))
        return []
    st.dataframe(report_frame(rows), key=f"trials_{group}", hide_index=True)
    return [r.run_id for r in rows]


def latest(run_id: str) -> None:
    """The newest trials of run_id, if any, with a link to compare them."""
    mine = trials.groups(state.runs_dir(), run_id)
    if not mine:
        return
    group = list(mine)[-1]
    st.caption(f"Remedy trials {group}: does {run_id}'s alert still fire, and how do the losses compare?")
    verdicts(group)
    if st.button("Compare them", key="trials_compare"):
        st.session_state["compare_trials"] = group
        st.switch_page(layout.page("compare.py"))


def group_picker(key: str = "compare_trials") -> str | None:
    """Pick a trial group to compare (None: pick runs by hand)."""
    names = list(trials.groups(state.runs_dir()))
    if not names:
        return None
    if st.session_state.get(key) not in (None, *names):
        st.session_state.pop(key)
    return st.selectbox("Remedy trials", names, index=None, key=key, placeholder="pick runs by hand below")
