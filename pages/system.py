"""System: CPU, memory and threads of each live trainer, device memory, and machine totals."""

import pandas as pd
import streamlit as st

from app import live_data, state, system_stats
from trainer.rundir import run_format as rf

st.title("System")


@st.fragment(run_every=2.0)
def system() -> None:
    totals = system_stats.machine_totals(state.runs_dir() if state.runs_dir().exists() else ".")
    cols = st.columns(4)
    cols[0].metric("CPU", f"{totals['cpu_percent']:.0f} %", help=f"{totals['cpu_count']} cores")
    cols[1].metric("Memory", f"{totals['memory_used_gb']:.1f} / {totals['memory_total_gb']:.1f} GB")
    cols[2].metric("Load (1 min)", f"{totals.get('load_1m', float('nan')):.2f}")
    cols[3].metric("Disk free (runs)", f"{totals.get('disk_free_gb', float('nan')):.1f} GB")

    rows, devices = [], []
    for info in state.list_run_infos():
        if info.state not in rf.LIVE_STATES:
            continue
        view = state.run_view(info.run_id)
        row = system_stats.process_row(info.run_id, view.status)
        if row:
            rows.append(row)
        latest = live_data.latest_with_change(
            view.metrics_view.tail(live_data.TAIL_ROWS), [rf.CUDA_MEM_MB, rf.CUDA_MEM_PEAK_MB]
        )
        if latest:
            device = (view.status or {}).get("device", "")
            devices.append({"run": info.run_id, "device": device, **{k: v[0] for k, v in latest.items()}})
    st.subheader("Trainer processes")
    st.caption(
        "With threads: auto each run of ours takes an equal share of the physical cores that other work "
        "leaves free (its CPU over the last few seconds), looked at again every 5 s; 'threads from' says "
        "what its share came from. A new run goes to a GPU none of ours is on."
    )
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="system_procs")
    else:
        st.caption("No trainer is running.")
    st.subheader("Device memory (from the trainers' metrics)")
    if devices:
        st.dataframe(pd.DataFrame(devices), hide_index=True, key="system_devices")
    else:
        st.caption("No CUDA memory reported (CPU runs report none).")
    me = system_stats.dashboard_row()
    st.caption(f"Dashboard process: pid {me['pid']}, {me['rss_mb']:.0f} MB, {me['threads']} threads.")


system()
