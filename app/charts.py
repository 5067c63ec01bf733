"""Altair chart builders for run series: smoothed lines over faint raw points, log toggle, bands.

Everything here is pure: a page hands in DataFrames and gets back a table and a spec, so tests can
check what would be drawn without a browser.

    long = series_table({"run-a": metrics}, ["train/loss", "val/loss"], x="step", smoothing=0.6)
    data, spec = line_chart(long, "step", "loss", log_y=True)  # data: an Arrow table
    st.vega_lite_chart(data, spec, width="stretch")
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import altair as alt
import numpy as np
import pandas as pd
import pyarrow as pa

from app.smoothing import ema
from trainer.doctor.outputs import VarianceCollapse
from trainer.rundir import run_format as rf
from trainer.rundir.metrics_store import MetricsView, SeriesBuckets
from trainer.rundir.summary import MAX_POINTS

X_STEP, X_TIME = "step", "time"
# out/variance_ratio is pred_std / target_std (docs/run-format.md). The doctor's variance_collapse
# fires when it stays below VarianceCollapse.max_std_ratio; the chart shades the same zone so a
# user sees the line enter it.
COLLAPSE_BELOW = VarianceCollapse.max_std_ratio
LONG_SCHEMA = (
    ("run", pa.string()),
    ("series", pa.string()),
    ("line", pa.string()),
    ("x", pa.float64()),
    ("value", pa.float64()),
    ("smoothed", pa.float64()),
)
LONG_COLUMNS = [name for name, _ in LONG_SCHEMA]
EMPTY_TABLE = pa.table({name: pa.array([], type=kind) for name, kind in LONG_SCHEMA})
# Drawn on a canvas, not as SVG (vega-embed's default, which Streamlit keeps for up to 2,000 points
# a layer): SVG is a DOM node per hover target, rebuilt on each refresh (benchmarks/browser_cost.py).
CANVAS = {"embedOptions": {"renderer": "canvas"}}


def _chart_points(drawn: SeriesBuckets, x: str, weight: float, positive_only: bool):
    """(x, value, smoothed) of a series' buckets: each bucket's min and max, in x order (one point
    when they are the same row), then the newest row if no bucket drew it.

    smoothed is TensorBoard's debiased EMA at bucket resolution: over the bucket means, with the
    weight a bucket of `size` rows carries (weight ** size). Buckets of one row (a run of up to
    max_points rows, or a zoomed-in window) give exactly the EMA of the rows.
    """
    b = drawn.buckets
    keep = b.count > 0
    low_x, high_x = (at[keep] for at in b.x_at(x))
    low, high = b.min[keep], b.max[keep]
    means = b.total[keep] / b.count[keep]
    smooth = ema(means, weight**drawn.size) if weight > 0 else None
    low_first = low_x <= high_x
    xs = np.stack([np.where(low_first, low_x, high_x), np.where(low_first, high_x, low_x)], axis=1).ravel()
    values = np.stack([np.where(low_first, low, high), np.where(low_first, high, low)], axis=1).ravel()
    ok = np.stack([np.ones(len(low), bool), (low_x != high_x) | (low != high)], axis=1).ravel()
    smoothed = np.repeat(smooth, 2) if smooth is not None else values
    if drawn.newest is not None:
        step, time, value = drawn.newest
        newest_x = step if x == X_STEP else time
        if not ok.any() or newest_x > xs[ok][-1]:
            xs, values = np.append(xs, newest_x), np.append(values, value)
            smoothed = np.append(smoothed, smoothed[-1] if smooth is not None and len(smoothed) else value)
            ok = np.append(ok, True)
    ok &= np.isfinite(xs)
    if positive_only:
        ok &= values > 0
    return xs[ok], values[ok], smoothed[ok]


def _view(metrics: MetricsView | pd.DataFrame) -> MetricsView:
    """A run's metrics as a view; a DataFrame (a test's) with non-numbers read as NaN."""
    if isinstance(metrics, MetricsView):
        return metrics
    numeric = {
        c: metrics[c] if metrics[c].dtype.kind in "iuf" else pd.to_numeric(metrics[c], errors="coerce")
        for c in metrics.columns
    }
    return MetricsView.from_frame(pd.DataFrame(numeric))


def _points(view: MetricsView, column: str, x: str, weight: float, positive_only: bool, max_points: int, low):
    """_chart_points, remembered by the view: it never changes, and every session shares it."""
    memo = view.derived
    key = ("chart_points", column, x, weight, positive_only, max_points, low)
    if key not in memo:
        memo[key] = _chart_points(view.buckets(column, x, max_points, low=low), x, weight, positive_only)
    return memo[key]


def series_table(
    frames: dict[str, MetricsView | pd.DataFrame],
    columns: list[str],
    x: str = X_STEP,
    smoothing: float = 0.0,
    max_points: int = MAX_POINTS,
    positive_only: bool = False,
    low: float | None = None,
) -> pa.Table:
    """One long Arrow table (run, series, line, x, value, smoothed) for several runs and series.

    frames: each run's metrics (a snapshot's metrics_view; a DataFrame works too). Each series is
    drawn from min/max buckets (trainer.rundir.summary), so at most about max_points points per
    (run, series) whatever the run's length, smoothed as _chart_points says (those `smoothed` allows).
    positive_only drops values <= 0 (a log axis cannot show them); low, if given, draws only the
    rows from there on the x axis (a zoom: few enough rows are drawn one point per row). Arrow, not pandas: st.vega_lite_chart sends an Arrow table as
    it is, while a DataFrame costs a pandas-to-Arrow conversion (with thread start-ups) per chart.
    """
    names, xs_parts, value_parts, smooth_parts = [], [], [], []
    several_runs = len(frames) > 1
    for run_id, frame in frames.items():
        if frame is None:
            continue
        view = _view(frame)
        if x not in view.columns:
            continue
        for column in columns:
            if column not in view.columns:
                continue
            weight = smoothing if smoothed(column) else 0.0
            xs, values, smooth = _points(view, column, x, weight, positive_only, max_points, low)
            if not len(xs):
                continue
            names.append((run_id, column, f"{run_id} · {column}" if several_runs else column, len(xs)))
            xs_parts.append(xs)
            value_parts.append(values)
            smooth_parts.append(smooth)
    if not names:
        return EMPTY_TABLE

    def repeated(i: int) -> pa.Array:
        return pa.concat_arrays([pa.repeat(pa.scalar(entry[i], pa.string()), entry[3]) for entry in names])

    return pa.table(
        {
            "run": repeated(0),
            "series": repeated(1),
            "line": repeated(2),
            "x": np.concatenate(xs_parts),
            "value": np.concatenate(value_parts),
            "smoothed": np.concatenate(smooth_parts),
        }
    )


def _x_encoding(x: str) -> alt.X:
    if x == X_TIME:
        return alt.X("when:T", title="wall time")
    return alt.X("x:Q", title="step")


def chart_data(long: pa.Table | pd.DataFrame, x: str = X_STEP) -> pa.Table | pd.DataFrame:
    """The table a line spec draws: the long table, plus a datetime column for the wall-time axis."""
    if x != X_TIME:
        return long
    if isinstance(long, pd.DataFrame):
        data = long.copy()
        data["when"] = pd.to_datetime(data["x"], unit="s", utc=True)
        return data
    seconds = long.column("x").to_numpy()
    when = pa.array((seconds * 1e9).astype(np.int64), type=pa.timestamp("ns", tz="UTC"))
    return long.append_column("when", when)


def line_spec(*args, **kwargs) -> dict:
    """The cached spec in a new top-level dict: Streamlit adds top-level keys (autosize) to a copy
    of its own and never changes nested ones, so the layers are shared (read them, never modify
    them); a deep copy per chart and refresh cost ~1 ms."""
    return dict(_line_spec(*args, **kwargs))


@functools.lru_cache(maxsize=256)
def _line_spec(
    x: str = X_STEP,
    y_title: str = "",
    log_y: bool = False,
    smoothed: bool = False,
    band: tuple[float, float] | None = None,
    show_points: bool = False,
    height: int = 260,
    validate: bool = False,
) -> dict:
    """A Vega-Lite spec (built with Altair) for lines coloured by run and series, with tooltips.

    The spec holds no run data: pages pass the table next to it (st.vega_lite_chart(data, spec)),
    which Streamlit sends as Arrow. Built once per combination of options: Altair's build and
    validation cost 15-50 ms per chart, too much for a refresh every second.
    smoothed=True draws the raw line faint behind the smoothed one; band=(low, high) shades a
    horizontal region (the collapse zone of the variance ratio); show_points marks every point.
    """
    scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    color = alt.Color("line:N", title=None, legend=alt.Legend(orient="bottom"))
    tooltip = [alt.Tooltip("line:N", title="series"), alt.Tooltip("x:Q", title="step" if x == X_STEP else "time (s)")]
    tooltip += [alt.Tooltip("value:Q", format=".5g", title="value")]
    if smoothed:
        tooltip.append(alt.Tooltip("smoothed:Q", format=".5g", title="smoothed"))
    # Tooltips only on the hover targets: on the lines too, the browser formatted them for every
    # point of every layer on each refresh, never to be shown (a line shows no per-point tooltip).
    base = alt.Chart().encode(x=_x_encoding(x), color=color)
    value_y = alt.Y("value:Q", scale=scale, title=y_title)
    layers = []
    if band is not None:
        shade = alt.Data(values=[{"low": band[0], "high": band[1]}])
        layers.append(
            alt.Chart(shade).mark_rect(opacity=0.15, color="#d62728").encode(y=alt.Y("low:Q", scale=scale), y2="high:Q")
        )
    if smoothed:
        layers.append(base.mark_line(opacity=0.25, strokeWidth=1).encode(y=value_y))
        layers.append(base.mark_line(strokeWidth=2).encode(y=alt.Y("smoothed:Q", scale=scale, title=y_title)))
    else:
        layers.append(base.mark_line(strokeWidth=1.5).encode(y=value_y))
    # Invisible points give every point a hover target; visible ones when there are few (val/loss).
    points = base.mark_point(size=25, filled=True, opacity=0.7 if show_points else 0)
    layers.append(points.encode(y=value_y, tooltip=tooltip))
    # Schema validation is most of the build time; tests build every live spec with validate=True.
    # aria=False: no screen-reader description per point, a string formatted for every point of
    # every layer on each refresh that a canvas never shows.
    layered = alt.layer(*layers).properties(height=height, usermeta=CANVAS).configure(aria=False)
    spec = layered.to_dict(validate=validate)
    # Data-less Altair charts get a placeholder dataset; drop it so layers use the table passed in.
    for layer in spec["layer"]:
        if layer.get("data") == {"name": "empty"}:
            del layer["data"]
    spec.pop("datasets", None)
    spec.pop("data", None)
    return spec


def line_chart(
    long: pa.Table | pd.DataFrame,
    x: str = X_STEP,
    y_title: str = "",
    log_y: bool = False,
    smoothed: bool = False,
    band: tuple[float, float] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """(data, spec) for st.vega_lite_chart: the long table and its cached spec."""
    spec = line_spec(x, y_title, log_y, smoothed, band, show_points=len(long) <= 200)
    return chart_data(long, x), spec


def pred_target_chart(pred, target, height: int = 240) -> alt.Chart:
    """Prediction and target of one numeric sample against their index."""
    pred = list(pred or [])
    target = list(target or [])
    rows = [{"i": i, "series": "prediction", "value": v} for i, v in enumerate(pred)]
    rows += [{"i": i, "series": "target", "value": v} for i, v in enumerate(target)]
    data = pd.DataFrame(rows, columns=["i", "series", "value"])
    return (
        alt.Chart(data)
        .mark_line()
        .encode(
            x=alt.X("i:Q", title="position"),
            y=alt.Y("value:Q", scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title=None),
            tooltip=["series", "i", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(height=height)
    )


class Chart(NamedTuple):
    """One chart of the Live page. Adding a chart is adding one entry to CHARTS."""

    title: str
    series: tuple[str, ...]  # run_format names; a chart with none of them logged is not drawn
    y_title: str
    band: tuple[float, float] | None = None  # a shaded zone (the doctor's threshold)
    log_applies: bool = False  # the page's log-scale toggle applies
    smooth: bool = True  # the smoothing slider applies (never to val/... series, see smoothed())
    # Drawn in the Live page's slower part (live_panel.REFRESH_SLOW_S): every chart redrawn at each fast
    # refresh costs a run on the same machine the browser's CPU, and the tiles show most newest values.
    slow: bool = False


CHARTS = (
    Chart("Loss", (rf.TRAIN_LOSS, rf.VAL_LOSS), "loss", log_applies=True),
    Chart("Learning rate", (rf.LR,), "lr", smooth=False, slow=True),  # smoothing a schedule only blurs it
    Chart(
        "Variance ratio (pred std / target std; shaded: collapse)",
        (rf.VARIANCE_RATIO,),
        "ratio",
        band=(0.0, COLLAPSE_BELOW),
        slow=True,
    ),
    Chart("Gradient norm", (rf.GRAD_NORM,), "norm", log_applies=True, slow=True),
    # A curriculum's pace next to the loss it drives (a ramp too fast raises the loss: report 002).
    Chart("Curriculum difficulty", (rf.CURRICULUM_DIFFICULTY,), "difficulty", smooth=False, slow=True),
    Chart("Steps per second", (rf.STEPS_PER_S,), "steps/s", slow=True),
    Chart("Tokens per second", (rf.TOKENS_PER_S,), "tokens/s", slow=True),
    Chart("Samples per second", (rf.SAMPLES_PER_S,), "samples/s", slow=True),
    Chart("Memory (MB)", (rf.RSS_MB, rf.CUDA_MEM_MB, rf.CUDA_MEM_PEAK_MB), "MB", smooth=False, slow=True),
    Chart("CPU (%)", (rf.CPU_PERCENT,), "%", smooth=False, slow=True),
)
_UNSMOOTHED = {s for chart in CHARTS if not chart.smooth for s in chart.series}


def smoothed(column: str) -> bool:
    """Whether the smoothing slider applies to a series. Not to eval series (val/...): each point is
    already a mean over eval_steps batches, and an EMA by point over one point per eval_interval
    would lag it by several evals (at 0.6, the val line sat ~0.1 above the real val/loss)."""
    return column not in _UNSMOOTHED and not column.startswith("val/")
