"""Samples: what the model generates, newest first, as plain text with statistics."""

import streamlit as st

from app import charts, layout, sample_stats, state

st.title("Samples")
layout.no_runs_guard()
run_id = layout.run_picker("Run", key="samples_run", multiple=False)[0]
how_many = st.slider("Samples shown", 1, 20, 3, key="samples_count")


@st.fragment(run_every=2.0)
def newest() -> None:
    view = state.run_view(run_id)
    if not view.exists:
        layout.warning(view.error)
        return
    layout.skipped_note(view)
    if view.samples.empty:
        st.info("No samples yet: the first appears after sample_interval steps.")
        return
    records = view.samples.to_dict("records")[::-1]
    table = sample_stats.stats_table(view.samples)
    st.caption(sample_stats.table_caption(table))
    st.dataframe(table.iloc[::-1], hide_index=True, key="samples_stats")
    for record in records[:how_many]:
        st.subheader(f"step {record.get('step')}")
        if isinstance(record.get("text"), str):
            st.text(record["text"])  # plain text: never markdown or HTML
        elif record.get("pred") is not None:
            st.altair_chart(charts.pred_target_chart(record.get("pred"), record.get("target")), width="stretch")
        stats = sample_stats.sample_stats(record)
        st.caption(" · ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()))


newest()

st.header("Side by side")
view = state.run_view(run_id)
steps = sorted({int(s) for s in view.samples["step"]}) if not view.samples.empty else []
if len(steps) < 2:
    st.caption("Two sample steps are needed for a side-by-side view.")
else:
    by_step = {int(r["step"]): r for r in view.samples.to_dict("records")}
    left, right = st.columns(2)
    for column, default, key in ((left, 0, "samples_left"), (right, len(steps) - 1, "samples_right")):
        with column:
            step = st.selectbox("step", steps, index=default, key=key)
            record = by_step[step]
            if isinstance(record.get("text"), str):
                st.text(record["text"])
            elif record.get("pred") is not None:
                st.altair_chart(charts.pred_target_chart(record.get("pred"), record.get("target")), width="stretch")
            st.json(sample_stats.sample_stats(record), expanded=False)
