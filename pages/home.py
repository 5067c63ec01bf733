"""Runs: every run with its live state, controls per run, and a form to start a new one."""

import streamlit as st

from app import layout, prefetch, run_forms, state, timing
from app import runs_table as table

st.title("Runs")
layout.flash()

if not state.run_ids():
    st.subheader("No runs yet")
    st.write("Train a small character-level GPT on Shakespeare and watch it learn, live.")
    if st.button("Train Shakespeare (default)", key="start_default", type="primary", icon=":material/play_arrow:"):
        result = run_forms.start_default_run(state.runs_dir())
        if result.ok:
            state.note_change(result.run_id)
            layout.select_runs([result.run_id])
            st.session_state["flash"] = f"Started {result.run_id} (pid {result.pid})."
            st.switch_page(layout.page("live.py"))
        for message in result.field_errors.values():
            layout.refusal(message)


@st.fragment(run_every=1.0)
def runs_table() -> None:
    with timing.logged("runs"):
        infos = state.list_run_infos()
        if not infos:
            return
        prefetch.start([info.run_id for info in infos])  # newest first: the likely next click
        table.enforce_pending_stops(state.runs_dir(), infos)
        table.table_message()
        table.header_row()
        for info in infos:
            table.control_row(info)


runs_table()
layout.fork_form()

with st.expander("Start a new run", expanded=not state.run_ids()):
    table.new_run_form()
