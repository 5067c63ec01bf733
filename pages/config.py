"""Config: the run's resolved config, its diff against its parent, and resume/fork with changes."""

import pandas as pd
import streamlit as st
import yaml

from app import layout, run_forms, state
from trainer import config as C
from trainer import runs

st.title("Config")
run_id, view = layout.single_run_header("config_run")

config = view.config or runs.read_config(state.run_dir_of(run_id))
if config is None:
    st.warning(f"Run {run_id} has no readable config.yaml yet.")
    st.stop()

left, right = st.columns(2)
with left:
    st.subheader("Resolved config")
    st.code(yaml.safe_dump(config, sort_keys=False), language="yaml")
with right:
    parent = (view.status or {}).get("parent")
    st.subheader(f"Changes against parent {parent}" if parent else "Parent")
    parent_config = runs.read_config(state.run_dir_of(parent)) if parent else None
    if not parent:
        st.caption("This run was not forked.")
    elif parent_config is None:
        st.caption(f"The parent {parent} is gone or has no readable config.")
    else:
        changes = C.diff(parent_config, config)
        rows = [{"key": k, parent: str(a), run_id: str(b)} for k, (a, b) in changes.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True) if rows else st.caption("Same config as its parent.")
    if not view.events.empty and "kind" in view.events.columns:
        changed = view.events[view.events["kind"] == "config_change"]
        if not changed.empty:
            st.subheader("Changes on resume")
            st.dataframe(changed.drop(columns=["kind"], errors="ignore"), hide_index=True)

st.subheader("Continue with changes")
refused = layout.not_restartable(view.status)
if refused:  # a script's run or an imported log: nothing of ours to resume or fork
    st.caption(refused)
    st.stop()
st.caption(
    "Resume continues this run from its last checkpoint; fork starts a new run from a checkpoint. "
    "Changes that alter parameter shapes are refused with the reason."
)
errors = st.session_state.get("config_errors", {})
with st.form("config_edit"):
    sets_text = st.text_area(
        "Changes (key=value, one per line)", key="config_sets", placeholder="max_steps=4000\nlr=3e-4"
    )
    if errors.get("sets"):
        layout.refusal(errors["sets"])
    resume_col, fork_col = st.columns(2)
    resume = resume_col.form_submit_button("Resume with changes", type="primary")
    fork = fork_col.form_submit_button("Fork with changes")
if resume:
    result = run_forms.start_resume(state.runs_dir(), run_id, sets_text)
    st.session_state["config_errors"] = result.field_errors
    if result.ok:
        st.session_state["flash"] = f"Resumed {run_id} (pid {result.pid}) with {sets_text.strip() or 'no changes'}."
    st.rerun()
if fork:
    st.session_state["config_errors"] = {}
    layout.open_fork_form(run_id, run_forms.parse_sets_text(sets_text))
    st.rerun()
layout.fork_form(key="config_fork")
