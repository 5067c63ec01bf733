"""Diagnosis: the doctor's full report on a run, and its alerts with remedies."""

import streamlit as st

from app import diagnosis, layout, live_panel, state, trial_view

st.title("Diagnosis")
run_id, view = layout.single_run_header("diagnosis_run")

st.subheader("Alerts raised while training")
live_panel.alert_banners(view, limit=10)
if view.events.empty or "alert" not in set(view.events.get("kind", [])):
    st.caption("No alerts in events.jsonl.")
layout.fork_form(key="diagnosis_fork")

st.subheader("Remedy trials")
trial_view.refusal()
trial_view.try_button(run_id, layout.not_restartable(view.status))
trial_view.latest(run_id)

st.subheader("Full report")
st.caption(diagnosis.READINGS)
report = diagnosis.report_markdown(state.run_dir_of(run_id), view.version)  # recomputed when the run changed
st.markdown(report)  # the doctor's markdown; HTML stays escaped (no unsafe_allow_html anywhere)
