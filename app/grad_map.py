"""Per-parameter gradient norms and update ratios (grads.jsonl) as heatmaps: parameter by probe step.

What `run.watch(model)` and our trainer's probes log, as wandb.watch's gradient panels show it: one
row per parameter in the model's order, one column per probe, the colour log10 of the value. A
parameter whose gradient is exactly 0 (what dead_parameters counts) is drawn apart, in red, so the
alert's names can be found on the map. Pure: a page hands in the run's grads frame.

    cells = grad_cells(view.grads, rf.GRAD_NORMS)
    st.altair_chart(heatmap(cells, "gradient norm"), width="stretch")
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from trainer.rundir import run_format as rf

MAX_PROBES = 120  # columns drawn: evenly spaced probes, the newest always among them
ROW_PX = 16  # height of one parameter's row: its label's line
KINDS = {rf.GRAD_NORMS: "gradient norm", rf.UPDATE_RATIOS: "update ratio (|update| / |weight|)"}


def grad_cells(grads: pd.DataFrame, kind: str, max_probes: int = MAX_PROBES) -> pd.DataFrame:
    """One row per (parameter, probe step): param, step, value, log10 (NaN where the value is 0 or
    missing), dead (value exactly 0). Parameters in the order the probes list them; at most
    max_probes probe steps, evenly spaced, the newest always kept."""
    prefix = f"{kind}/"
    columns = [c for c in grads.columns if c.startswith(prefix)] if len(grads) else []
    if not columns or "step" not in grads:
        return pd.DataFrame(columns=["param", "step", "value", "log10", "dead"])
    frame = grads[["step", *columns]].dropna(subset=["step"])
    if len(frame) > max_probes:
        keep = np.unique(np.linspace(0, len(frame) - 1, max_probes).round().astype(int))
        frame = frame.iloc[keep]
    long = frame.melt(id_vars="step", var_name="param", value_name="value").dropna(subset=["value"])
    long["param"] = long["param"].str.slice(len(prefix))
    long["step"] = long["step"].astype(int)
    values = long["value"].astype(float)
    long["dead"] = values == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        long["log10"] = np.where(values > 0, np.log10(values.where(values > 0)), np.nan)
    return long[["param", "step", "value", "log10", "dead"]].reset_index(drop=True)


def heatmap(cells: pd.DataFrame, title: str) -> alt.Chart:
    """Parameters down, probe steps across, log10 of the value as colour; dead cells in red."""
    order = list(dict.fromkeys(cells["param"]))  # the model's order, as first listed
    y = alt.Y("param:N", sort=order, title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False))
    x = alt.X("step:O", title="step", axis=alt.Axis(labelOverlap=True, labelAngle=0))
    tooltip = [
        alt.Tooltip("param:N", title="parameter"),
        alt.Tooltip("step:O", title="step"),
        alt.Tooltip("value:Q", format=".3g", title=title),
    ]
    live = (
        alt.Chart(cells)
        .transform_filter("isValid(datum.log10)")
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color("log10:Q", title=f"log10 {title}", scale=alt.Scale(scheme="viridis")),
            tooltip=tooltip,
        )
    )
    dead = alt.Chart(cells).transform_filter("datum.dead").mark_rect(color="#d62728").encode(x=x, y=y, tooltip=tooltip)
    # a step per row, not a total height: a discrete axis set to a height drew 6 rows in 54 px and
    # left out 4 of their labels
    return alt.layer(live, dead).properties(height=alt.Step(ROW_PX), usermeta={"embedOptions": {"renderer": "canvas"}})


def dead_params(cells: pd.DataFrame) -> list[str]:
    """Parameters whose value is exactly 0 at the newest probe drawn."""
    if cells.empty:
        return []
    newest = cells[cells["step"] == cells["step"].max()]
    return newest.loc[newest["dead"], "param"].tolist()
