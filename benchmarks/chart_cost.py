"""What one Live chart costs the browser each time it is redrawn, by the points it draws.

    PYTHONPATH=. python benchmarks/chart_cost.py [--charts 8] [--points 60 600 2400] [--seconds 12]
                                                 [--repeats 2]

A one-fragment Streamlit page (written to a temp dir) draws CHARTS charts with the Live page's own
spec (app.charts.line_spec: smoothed, so a faint raw line, the smoothed line and the hover targets)
of POINTS points each, with new values at every 1 s refresh, as a training run's charts get. Over
SECONDS, after a settle: Chromium's CPU (all its processes, in cores). The same page with no chart
is the baseline; a chart's cost per redraw is (cores - baseline) / CHARTS, in ms of CPU a second.
Each size is measured REPEATS times, alternated with the others, in a fresh server and browser.
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
from app import charts

CHARTS, POINTS = int(os.environ["CHART_COST_CHARTS"]), int(os.environ["CHART_COST_POINTS"])
spec = charts.line_spec("step", "loss", smoothed=True)


def table(k, now):
    xs = np.arange(POINTS, dtype=float)
    values = np.sin(xs / 7 + k + now)  # new values at each refresh: the dataset is replaced
    return pa.table({"run": ["r"] * POINTS, "series": ["s"] * POINTS, "line": ["train/loss"] * POINTS,
                     "x": xs, "value": values, "smoothed": values})


@st.fragment(run_every=1.0)
def page():
    now = time.time()
    columns = st.columns(2)
    for k in range(CHARTS):
        with columns[k % 2]:
            st.vega_lite_chart(table(k, now), spec, width="stretch", key=f"chart_{k}")
    st.caption(f"tick {int(now)}")


page()
"""


def measure(root: Path, charts: int, points: int, seconds: float) -> float:
    """Chromium's cores while the page shows `charts` charts of `points` points."""
    # The page imports the project's app.charts from this checkout, installed or not.
    env = {"CHART_COST_CHARTS": str(charts), "CHART_COST_POINTS": str(points), "PYTHONPATH": str(ROOT)}
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
    args = parser.parse_args()
    sizes = [(0, 0)] + [(args.charts, points) for points in args.points]
    cores: dict[tuple[int, int], list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="chart-cost-") as tmp:
        root = Path(tmp)  # a checkout of one page, served as app/Home.py with the project's server config
        (root / "app").mkdir()
        (root / "runs").mkdir()
        (root / "app" / "Home.py").write_text(PAGE)
        shutil.copytree(ROOT / ".streamlit", root / ".streamlit")
        for _ in range(args.repeats):
            for size in sizes:
                cores[size].append(measure(root, *size, args.seconds))
                print(f"{size[0]} charts of {size[1]} points: Chromium {cores[size][-1]:.3f} cores", flush=True)
    base = statistics.median(cores[(0, 0)])
    out = {"no chart": {"chromium_cores": [round(c, 3) for c in cores[(0, 0)]]}}
    for size in sizes[1:]:
        per_chart_ms = (statistics.median(cores[size]) - base) / size[0] * 1000  # one redraw a second
        out[f"{size[0]} charts of {size[1]} points"] = {
            "chromium_cores": [round(c, 3) for c in cores[size]],
            "ms_per_chart_redraw": round(per_chart_ms, 1),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
