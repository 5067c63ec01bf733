"""The runs table of the Runs page: rows with state and alert counts, controls, new-run form.

Process control goes through trainer.runs / trainer.runs.process, the same code as the CLI. The
table reads only status.json and events.jsonl sizes (trainer.runs.list_runs), so it is cheap for
the server to refresh every second; the browser's redraw of its rows sets the pace (refresh_every).
"""

from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from app import layout, run_forms, state
from app.markdown import escape
from trainer import runs
from trainer.errors import NoCheckpoint, TrainerError
from trainer.rundir import run_format as rf
from trainer.runs import process

STATE_COLOURS = {
    rf.STARTING: "blue",
    rf.RUNNING: "green",
    rf.STOPPING: "orange",
    rf.STOPPED: "gray",
    rf.FINISHED: "violet",
    rf.FAILED: "red",
    rf.CRASHED: "red",
}
MESSAGE_S = 20.0  # how long a control's outcome stays above the table
HEADER = ("run", "state", "step", "best val loss", "alerts", "started", "actions")
WIDTHS = (3, 1.2, 1.3, 1.2, 1.6, 1.5, 3.2)
# The table redraws every row at each refresh, and a row costs the browser ~15 ms of CPU per redraw
# (20 live runs: Chromium 0.33 cores, on the machine the runs train on), so it redraws at most
# ROWS_PER_S rows a second: every second up to 10 runs, every 2 s up to 20. A click reruns it at once.
ROWS_PER_S = 10


def refresh_every(rows: int) -> float:
    """Seconds between the runs table's refreshes when it has this many rows."""
    return float(max(1, math.ceil(rows / ROWS_PER_S)))


def format_alerts(counts: dict[str, int]) -> str:
    """'2 critical · 1 warning' (only non-zero severities), or '—'."""
    parts = [f"{counts.get(s, 0)} {s}" for s in ("critical", "warning", "info") if counts.get(s, 0)]
    return " · ".join(parts) or "—"


def format_step(info: runs.RunInfo) -> str:
    return f"{info.step} / {info.max_steps}" if info.max_steps else str(info.step)


def format_started(started: float | None, now: float | None = None) -> str:
    if not started:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))


def runs_frame(infos: list[runs.RunInfo]) -> pd.DataFrame:
    """The table as data (for tests and export): one row per run."""
    rows = [
        {
            "run": i.run_id,
            "task": i.task,
            "state": i.state,
            "step": i.step,
            "max_steps": i.max_steps,
            "best_val_loss": i.best_val_loss,
            "alerts": format_alerts(i.alert_counts),
            "started": format_started(i.started),
            "parent": i.parent or "",
        }
        for i in infos
    ]
    return pd.DataFrame(
        rows, columns=["run", "task", "state", "step", "max_steps", "best_val_loss", "alerts", "started", "parent"]
    )


def stop_grace_s() -> float:
    """The grace before SIGTERM ($TRAINER_STOP_GRACE_S); a bad value is said, and the default used."""
    try:
        return runs.stop_grace_s()
    except TrainerError as e:
        st.error(f"{e}; using {runs.DEFAULT_STOP_GRACE_S:g} s")
        return runs.DEFAULT_STOP_GRACE_S


def enforce_pending_stops(runs_dir, infos: list[runs.RunInfo]) -> None:
    """Escalate stop requests older than the grace period to a verified SIGTERM."""
    live = [info for info in infos if info.state in rf.LIVE_STATES]
    grace = stop_grace_s() if live else None
    for info in live:
        try:
            runs.enforce_stop(runs_dir, info.run_id, grace)
        except TrainerError:
            pass  # the run vanished between listing and checking


def _act(action, run_id: str) -> None:
    """Button callback: run a control action and leave a message for the table. A resume refused
    for want of any checkpoint (a crash in the first minute) leaves the offer to start afresh."""
    try:
        st.session_state["table_message"] = ("success", action(run_id), time.time(), None)
    except NoCheckpoint as e:
        st.session_state["table_message"] = ("error", str(e), time.time(), run_id)
    except TrainerError as e:
        st.session_state["table_message"] = ("error", str(e), time.time(), None)
    state.note_change(run_id)


def _afresh(run_id: str) -> None:
    """Button callback: a new run from run_id's own config (what the CLI message says to type)."""
    result = run_forms.start_new_from_run(state.runs_dir(), run_id, [])
    if result.ok:
        text = f"Started {result.run_id} (pid {result.pid}) afresh from {run_id}'s config."
        st.session_state["table_message"] = ("success", text, time.time(), None)
        state.note_change(result.run_id)
    else:
        st.session_state["table_message"] = ("error", "; ".join(result.field_errors.values()), time.time(), None)


def _stop(run_id: str) -> str:
    runs.request_stop(state.runs_dir(), run_id)
    return f"Asked {run_id} to stop: it finishes the step, saves a checkpoint and exits."


def _stop_script(run_id: str) -> str:
    runs.request_stop(state.runs_dir(), run_id)
    return (
        f"Asked {run_id} to stop: run.should_stop() is now true in its script, which saves what its own code "
        f"saves. If the script is still running {stop_grace_s():g} s from now, it is sent SIGTERM: what it "
        "logged is kept and the run is recorded as stopped."
    )


def _resume(run_id: str) -> str:
    pid = process.start_resume(state.runs_dir(), run_id)
    return f"Resumed {run_id} (pid {pid})."


def header_row() -> None:
    for column, title in zip(st.columns(WIDTHS), HEADER):
        column.caption(title)


def control_row(info: runs.RunInfo) -> None:
    """One run: its facts and Stop / Resume / Fork / Live buttons."""
    live = info.state in rf.LIVE_STATES
    with st.container(key=f"row_{info.run_id}"):
        cols = st.columns(WIDTHS, vertical_alignment="center")
        cols[0].text(
            info.run_id
            + (f"\n↳ forked from {info.parent}" if info.parent else "")
            + f"\n{info.task or ''}"
            + "".join(f"\n{note}" for note in info.skipped)
        )
        with cols[1]:
            st.badge(info.state, color=STATE_COLOURS.get(info.state, "gray"))
        cols[2].text(format_step(info))
        cols[3].text("—" if info.best_val_loss is None else f"{info.best_val_loss:.4f}")
        cols[4].text(format_alerts(info.alert_counts))
        cols[5].text(format_started(info.started))
        with cols[6].container(horizontal=True):
            foreign = info.writer == rf.WRITER_API  # a script's run: Stop asks its should_stop()
            why = layout.not_restartable({rf.STATUS_WRITER: info.writer, rf.STATUS_IMPORTED_FROM: info.imported_from})
            st.button(
                "Stop",
                key=f"stop_{info.run_id}",
                disabled=not live or info.state == rf.STOPPING,
                on_click=_act,
                args=(_stop_script if foreign else _stop, info.run_id),
            )
            st.button(
                "Resume",
                key=f"resume_{info.run_id}",
                disabled=live or why is not None,
                help=why,
                on_click=_act,
                args=(_resume, info.run_id),
            )
            if st.button("Fork", key=f"fork_{info.run_id}", disabled=why is not None, help=why):
                layout.open_fork_form(info.run_id)
                st.rerun()
            # A link, not a button: a click cannot be lost to the table's own refresh.
            with st.container(key=f"view_{info.run_id}"):
                st.page_link(layout.page("live.py"), label="Live", query_params={"run": info.run_id})


def table_message(now: float | None = None) -> None:
    """The last control's outcome, shown for MESSAGE_S: the table redraws every second, so a message
    shown once would vanish before it could be read (a refused Resume looked like a dead button)."""
    message = st.session_state.get("table_message")
    if not message:
        return
    kind, text, shown_at, afresh = message
    if (time.time() if now is None else now) - shown_at > MESSAGE_S:
        st.session_state.pop("table_message", None)
        return
    if kind == "success":
        st.success(escape(text))
    else:
        layout.refusal(text)
    if afresh is not None:
        st.button(
            "Start it afresh from its config",
            key=f"afresh_{afresh}",
            icon=":material/restart_alt:",
            on_click=_afresh,
            args=(afresh,),
            help=escape(f"A new run ({afresh}-new) from step 0 with {afresh}'s config.yaml; {afresh} stays as it is."),
        )


def new_run_form() -> None:
    """Preset picker and its main fields; errors are shown under the field they concern."""
    presets = run_forms.presets()
    preset = st.selectbox("Preset", presets, format_func=lambda p: p.name, key="new_preset")
    try:
        original = run_forms.preset_field_values(preset)
    except TrainerError as e:
        layout.refusal(f"Preset {preset.name} cannot be used: {e}")
        return
    errors = st.session_state.get("new_errors", {})
    with st.form("new_run_form"):
        edited = {}
        cols = st.columns(3)
        for i, (key, value) in enumerate(original.items()):
            with cols[i % 3]:
                edited[key] = st.text_input(key, value=value, key=f"new_{preset.stem}_{key}")
                if errors.get(key):
                    layout.refusal(errors[key])
        run_id = st.text_input("Run id (empty: automatic)", key="new_run_id")
        if errors.get("run_id"):
            layout.refusal(errors["run_id"])
        extra = st.text_area("More changes (key=value, one per line)", key="new_extra")
        if errors.get(run_forms.GENERAL):
            layout.refusal(errors[run_forms.GENERAL])
        submitted = st.form_submit_button("Start run", type="primary")
    if submitted:
        result = run_forms.start_new_run(preset, edited, original, state.runs_dir(), extra, run_id)
        st.session_state["new_errors"] = result.field_errors
        if result.ok:
            state.note_change(result.run_id)
            layout.select_runs([result.run_id])
            st.session_state["flash"] = f"Started {result.run_id} (pid {result.pid})."
        st.rerun()
