"""Load the chart code while the first page is being read, once per server process.

Altair's import and the first Vega-Lite specs (built and validated once, then cached) take about
half a second; done on the first click on Live, that half second comes before the first chart.
The entry script starts this in a background thread instead, so it overlaps with the user
looking at the runs table.

    warmup.start()
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_thread: threading.Thread | None = None


def start() -> threading.Thread:
    """Start the warm-up once; later calls return the same (possibly finished) thread."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_warm, name="dashboard-warmup", daemon=True)
            _thread.start()
        return _thread


def _warm() -> None:
    # Imported here, in the warm-up thread, on purpose: importing them is the work being moved off
    # the first page's path (start-up cost, not a cycle).
    from app import timing

    with timing.logged("warmup"):
        _build()


def _build() -> None:
    import numpy as np

    from app import charts
    from app.smoothing import ema

    # The Live page's default view: step axis, linear scale, default smoothing, few or many points.
    for chart in charts.CHARTS:
        for show_points in (False, True):
            charts.line_spec(charts.X_STEP, chart.y_title, False, chart.smooth, chart.band, show_points=show_points)
    ema(np.linspace(1.0, 2.0, 1000), 0.6)  # pandas' first ewm call pays a one-off set-up
