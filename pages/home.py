"""Runs: every run with its live state, controls per run, and a form to start a new one."""

import streamlit as st

from app import layout, prefetch, run_forms, state, timing
from app import runs_table as table

st.title("Runs")
layout.flash()

# Kept for the table's fragment: when the first run appears (a script, the CLI, another tab), the
# whole page reruns once, so "No runs yet" and the open form do not stay above the new row.
run_count = len(state.run_ids())
st.session_state["home_empty"] = not run_count
if st.session_state["home_empty"]:
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


every = table.refresh_every(run_count)


@st.fragment(run_every=every)
def runs_table() -> None:
    with timing.logged("runs"):
        infos = state.list_run_infos()
        if not infos:
            return
        if st.session_state.get("home_empty") or table.refresh_every(len(infos)) != every:
            st.rerun()  # the whole page: its empty state is stale, or the cadence for this many runs
        prefetch.start([info.run_id for info in infos])  # newest first: the likely next click
        table.enforce_pending_stops(state.runs_dir(), infos)
        table.table_message()
        table.header_row()
        for info in infos:
            table.control_row(info)


runs_table()
layout.fork_form()

with st.expander("Start a new run", expanded=not run_count):
    table.new_run_form()
