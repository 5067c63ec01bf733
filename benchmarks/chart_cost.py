"""What one Live chart costs the browser each time it is redrawn, by the points it draws; with
--tiles, what Live's metric tiles cost, as st.metric widgets and as the one HTML block it draws.

    PYTHONPATH=. python benchmarks/chart_cost.py [--charts 8] [--points 60 600 2400] [--seconds 12]
                                                 [--repeats 2] [--tiles] [--every 1.0]

A one-fragment Streamlit page (written to a temp dir) draws CHARTS charts with the Live page's own
spec (app.charts.line_spec: smoothed, so a faint raw line, the smoothed line and the hover targets)
of POINTS points each, with new values at each refresh (every EVERY s), as a training run's charts
get. Over SECONDS, after a settle: Chromium's CPU (all its processes, in cores). The same page with
no chart is the baseline; a chart's cost per redraw is (cores - baseline) / CHARTS x EVERY, in ms.
Each size is measured REPEATS times, alternated with the others, in a fresh server and browser.
--tiles adds two pages with no chart: six tiles with new values at each refresh, drawn as six
st.metric widgets (what Live drew before) and as app.tiles.block (what it draws); their cost is
(cores - baseline), in cores at the refresh pace EVERY (Live's fast part: 0.75 s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from dashboard_latency import page_cores

from app.harness import ROOT, chromium, dashboard

SETTLE_MS = 4000
PAGE = """
import os, time
import numpy as np, pyarrow as pa, streamlit as st
from app import charts, tiles

CHARTS, POINTS = int(os.environ["CHART_COST_CHARTS"]), int(os.environ["CHART_COST_POINTS"])
TILES, EVERY = os.environ["CHART_COST_TILES"], float(os.environ["CHART_COST_EVERY"])
spec = charts.line_spec("step", "loss", smoothed=True)


def table(k, now):
    xs = np.arange(POINTS, dtype=float)
    values = np.sin(xs / 7 + k + now)  # new values at each refresh: the dataset is replaced
    return pa.table({"run": ["r"] * POINTS, "series": ["s"] * POINTS, "line": ["train/loss"] * POINTS,
                     "x": xs, "value": values, "smoothed": values})


@st.fragment(run_every=EVERY)
def page():
    now = time.time()
    latest = {series: ((now * (k + 1)) % 7, (now % 1) - 0.5) for k, (series, _, _) in enumerate(tiles.SERIES[:6])}
    if TILES == "metric":
        for column, (series, label, colour) in zip(st.columns(6), tiles.SERIES):
            value, change = latest[series]
            column.metric(label, tiles.format_number(value), tiles.format_number(change), delta_color=colour)
    elif TILES == "html":
        st.html(tiles.block(latest))
    columns = st.columns(2)
    for k in range(CHARTS):
        with columns[k % 2]:
            st.vega_lite_chart(table(k, now), spec, width="stretch", key=f"chart_{k}")
    st.caption(f"tick {int(now)}")


page()
"""


def measure(root: Path, charts: int, points: int, seconds: float, tiles: str = "", every: float = 1.0) -> float:
    """Chromium's cores while the page shows `charts` charts of `points` points (and tiles: "metric"
    or "html"), refreshed every `every` seconds."""
    # The page imports the project's app.charts from this checkout, installed or not.
    env = {"CHART_COST_CHARTS": str(charts), "CHART_COST_POINTS": str(points), "PYTHONPATH": str(ROOT)}
    env |= {"CHART_COST_TILES": tiles, "CHART_COST_EVERY": str(every)}
    with dashboard(root / "runs", env, root=root) as url, chromium() as page:
        page.goto(url)
        page.get_by_text("tick ", exact=False).first.wait_for(timeout=60_000)
        page.wait_for_timeout(SETTLE_MS)
        return page_cores(page, seconds)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=8)
    parser.add_argument("--points", type=int, nargs="+", default=[60, 600, 2400])
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiles", action="store_true", help="also six tiles as st.metric and as one HTML block")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between refreshes")
    args = parser.parse_args()
    # (label, charts, points, tiles)
    pages = [("no chart", 0, 0, "")] + [
        (f"{args.charts} charts of {n} points", args.charts, n, "") for n in args.points
    ]
    if args.tiles:
        pages += [("6 tiles as st.metric", 0, 0, "metric"), ("6 tiles as one HTML block", 0, 0, "html")]
    cores: dict[str, list[float]] = {label: [] for label, *_ in pages}
    with tempfile.TemporaryDirectory(prefix="chart-cost-") as tmp:
        root = Path(tmp)  # a checkout of one page, served as app/Home.py with the project's server config
        (root / "app").mkdir()
        (root / "runs").mkdir()
        (root / "app" / "Home.py").write_text(PAGE)
        shutil.copytree(ROOT / ".streamlit", root / ".streamlit")
        for _ in range(args.repeats):
            for label, charts, points, tiles in pages:
                cores[label].append(measure(root, charts, points, args.seconds, tiles, args.every))
                print(f"{label}: Chromium {cores[label][-1]:.3f} cores", flush=True)
    base = statistics.median(cores["no chart"])
    out = {"refresh_every_s": args.every, "no chart": {"chromium_cores": [round(c, 3) for c in cores["no chart"]]}}
    for label, charts, _, _ in pages[1:]:
        extra = statistics.median(cores[label]) - base
        out[label] = {"chromium_cores": [round(c, 3) for c in cores[label]]}
        if charts:
            out[label]["ms_per_chart_redraw"] = round(extra / charts * 1000 * args.every, 1)
        else:
            out[label]["cores_over_no_chart"] = round(extra, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
