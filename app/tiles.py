"""The Live page's metric tiles: the newest value of each headline series and its change since the
row before, drawn as one HTML block.

One block, not a row of st.metric: the tiles are redrawn at each fast refresh of the Live page, and
each st.metric is a styled React component of its own. Six st.metric tiles cost headless Chromium
0.041 cores at Live's 0.75 s pace, the block 0.010 (`benchmarks/chart_cost.py --tiles --every 0.75`),
CPU that a run on the same machine loses (issue 15). The block inherits the theme's font and text
colour, so light and dark both read; every string in it is escaped.
"""

from __future__ import annotations

import html

from trainer.rundir import run_format as rf

# (series, label, delta colour); only the series a run has logged are shown. The colours mean what
# st.metric's delta_color does: "normal" an increase is good (green), "inverse" a decrease is, "off"
# neither (grey).
SERIES = (
    (rf.TRAIN_LOSS, "train loss", "inverse"),
    (rf.VAL_LOSS, "val loss", "inverse"),
    (rf.LR, "learning rate", "off"),
    (rf.GRAD_NORM, "grad norm", "off"),
    (rf.VARIANCE_RATIO, "variance ratio", "normal"),
    (rf.STEPS_PER_S, "steps/s", "normal"),
    (rf.TOKENS_PER_S, "tokens/s", "normal"),
    (rf.SAMPLES_PER_S, "samples/s", "normal"),
)
GOOD, BAD, NEUTRAL = "#16a34a", "#dc2626", "#808495"  # read on both themes' backgrounds
BLOCK = "display:flex;flex-wrap:wrap;gap:0.5rem 1.5rem;margin-bottom:0.5rem"
TILE = "flex:1 1 7rem;min-width:0"
LABEL = "font-size:0.875rem;opacity:0.7;white-space:nowrap"
VALUE = "font-size:1.75rem;line-height:1.3;white-space:nowrap"
DELTA = "font-size:0.875rem;white-space:nowrap;color:{}"


def format_number(value: float) -> str:
    """Short enough for a tile in a six-tile row (a learning rate of 0.0008123 was cut off)."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.4g}"


def delta_colour(change: float, meaning: str) -> str:
    """The colour of a change as st.metric gives it: an increase is good with "normal", a decrease
    with "inverse"; "off" and no change are neutral."""
    if meaning == "off" or change == 0:
        return NEUTRAL
    return GOOD if (change > 0) == (meaning == "normal") else BAD


def tile(label: str, value: float, change: float | None, meaning: str) -> str:
    delta = ""
    if change is not None:
        # A schedule's constant LR recomputed each step differs from the row before by rounding
        # (-6.8e-12 on 1e-3): that is no change.
        change = 0.0 if abs(change) <= 1e-9 * abs(value) else change
        arrow = "▲" if change > 0 else "▼" if change < 0 else "■"
        delta = f'<div style="{DELTA.format(delta_colour(change, meaning))}">{arrow} {format_number(change)}</div>'
    return (
        f'<div class="tile" style="{TILE}"><div style="{LABEL}">{html.escape(label)}</div>'
        f'<div style="{VALUE}">{html.escape(format_number(value))}</div>{delta}</div>'
    )


def block(latest: dict[str, tuple[float, float | None]]) -> str:
    """The tiles of the series in `latest` ({series: (newest, change or None)}, as
    app.live_data.latest_with_change gives), in SERIES order; "" when none is there."""
    cells = [tile(label, *latest[series], meaning) for series, label, meaning in SERIES if series in latest]
    return f'<div class="live-tiles" style="{BLOCK}">{"".join(cells)}</div>' if cells else ""
