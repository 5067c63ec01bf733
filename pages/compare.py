"""Compare: several runs' series overlaid, their config differences, and CSV export."""

import streamlit as st

from app import charts, compare, layout, state, trial_view
from trainer.rundir import run_format as rf

st.title("Compare")
layout.no_runs_guard()
group = trial_view.group_picker()
if group:
    picked = trial_view.verdicts(group)  # the trial runs side by side, with their verdicts
else:
    picked = layout.run_picker("Runs to compare", key="compare_runs")
if not picked:
    st.info("Pick two or more runs.")
    st.stop()

views = [state.run_view(r) for r in picked]
frames = {v.run_id: v.metrics_view for v in views if v.exists and not v.metrics_view.empty}
for v in views:
    if not v.exists:
        layout.warning(v.error)
    layout.skipped_note(v)

available = compare.numeric_series(frames)
default = [s for s in (rf.TRAIN_LOSS, rf.VAL_LOSS) if s in available] or available[:1]
chosen = st.multiselect("Series", available, default=default, key="compare_series")
x = st.radio("x axis", [charts.X_STEP, charts.X_TIME], horizontal=True, key="compare_x")
# as on Live: a run that spiked to 1000x its loss flattens every other run's curve on a linear axis
log_y = st.toggle("log scale", key="compare_log", help="Values <= 0 are left out: a log axis cannot show them.")
smoothing = st.slider("smoothing", 0.0, 0.99, 0.6, 0.01, key="compare_smoothing")
for series in chosen:
    long = charts.series_table(frames, [series], x=x, smoothing=smoothing, positive_only=log_y)
    if long.num_rows:
        st.caption(series)
        data, spec = charts.line_chart(long, x, series, log_y=log_y, smoothed=smoothing > 0)
        st.vega_lite_chart(data, spec, width="stretch", key=f"cmp_{series}")

st.subheader("Config differences")
differences = compare.config_differences({v.run_id: v.config for v in views if v.exists})
if differences.empty:
    st.caption("The configs are identical." if len(views) > 1 else "Pick a second run to see differences.")
else:
    st.dataframe(differences, key="compare_diff")

st.subheader("Export metrics")
export_run = st.selectbox("Run", [v.run_id for v in views if v.exists], key="compare_export_run")
if export_run:
    metrics = frames.get(export_run)
    if metrics is None:
        st.caption("No metrics yet.")
    else:
        st.download_button(
            f"Download {export_run} metrics.csv ({len(metrics)} rows)",
            data=lambda: compare.metrics_csv(metrics.frame()),  # every row, only when asked
            file_name=f"{export_run}-metrics.csv",
            mime="text/csv",
            key="compare_download",
        )
