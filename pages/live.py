"""Live: loss, learning rate, variance ratio, gradients, speed and resources of one or more runs,
with the doctor's alerts on top. The status, alerts, tiles and loss chart refresh every 0.75 s while
a run trains (every 5 s once all have ended), the other charts below them every 5 s."""

import streamlit as st

from app import charts, layout, live_panel

st.title("Live")
layout.flash()
layout.no_runs_guard()

picked = layout.run_picker("Runs (several overlay)", key="live_runs")
controls = st.columns([2, 1, 3, 2])
x = controls[0].radio(
    "x axis",
    [charts.X_STEP, charts.X_TIME],
    horizontal=True,
    key="live_x",
    format_func=lambda v: "step" if v == charts.X_STEP else "wall time",
)
log_y = controls[1].toggle("log scale", key="live_log")
smoothing = controls[2].slider("smoothing (EMA, debiased)", 0.0, 0.99, 0.6, 0.01, key="live_smoothing")
last_steps = controls[3].selectbox(
    "steps shown",
    live_panel.LAST_STEPS,
    key="live_last_steps",
    format_func=live_panel.last_steps_label,
    disabled=x != charts.X_STEP,
    help="Zoom in on the newest steps: their raw rows, not buckets (step axis only).",
)

if not picked:
    st.info("Pick a run above.")
    st.stop()


every = live_panel.refresh_every(picked)


@st.fragment(run_every=every)
def live() -> None:
    live_panel.render(picked, x, log_y, smoothing, last_steps if x == charts.X_STEP else None)
    if live_panel.refresh_every(picked) != every:
        st.rerun()  # a run started or ended: the whole page again, to take the cadence that fits


@st.fragment(run_every=live_panel.REFRESH_SLOW_S)
def other_charts() -> None:
    live_panel.render_slow(picked, x, log_y, smoothing, last_steps if x == charts.X_STEP else None)


layout.fork_form()  # above the charts: the alert banner's "Fork with this fix" fills it
live()
other_charts()
