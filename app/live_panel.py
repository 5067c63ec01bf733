"""The changing part of the Live page: status line, alert banners, metric tiles and charts.

Pages call render(...) inside an st.fragment(run_every=refresh_every(...)) and render_slow(...)
inside one with run_every=REFRESH_SLOW_S; everything they read comes from the shared incremental
readers (app.state), so one refresh costs the appended bytes plus drawing. Drawing is the larger
part, and it is the browser's: on the machine that trains, each chart redrawn at each refresh takes
CPU from the run (benchmarks/sharing.py --parts page), so only the loss chart, the one a user
watches train, is redrawn that often; the tiles above give the newest learning rate, gradient norm,
variance ratio and speed as often, and the doctor's alerts come at once.
"""

from __future__ import annotations

import time

import pyarrow.compute as pc
import streamlit as st

from app import charts, grad_map, layout, live_data, run_forms, state, tiles, timing
from app.markdown import escape
from trainer.doctor import remedies
from trainer.doctor.base import headline
from trainer.rundir import run_format as rf
from trainer.rundir.reader import RunSnapshot
from trainer.rundir.summary import MAX_POINTS

BANNER = {"critical": st.error, "warning": st.warning, "info": st.info}
# The Live page's zoom: all steps, or only the newest N (drawn from their raw rows when they fit).
LAST_STEPS = (None, 1_000, 10_000, 100_000)
# Points per series in a zoom: the smallest zoom's rows one point each (the user asked to see each
# row), where the whole run draws at most MAX_POINTS.
ZOOM_MAX_POINTS = LAST_STEPS[1] + 2
# The Live page's refresh while a run it shows trains: under a second, because a row must show within
# one (issue 12) and a timer's wait alone reaches 95% of its period at p95, before the redraw; runs that
# have all ended change only when one is resumed, and each refresh redraws the page in the browser, so
# then a slower one.
REFRESH_LIVE_S, REFRESH_ENDED_S = 0.75, 5.0
# The charts below the loss (charts.Chart.slow): each chart redrawn costs Chromium 14-89 ms of CPU (60
# to 1,200 points, benchmarks/chart_cost.py), and the tiles show most of their newest values anyway.
REFRESH_SLOW_S = 5.0


def refresh_every(run_ids: list[str]) -> float:
    """Seconds between the Live page's refreshes for these runs (their states from the run table)."""
    infos = [state.run_info(run_id) for run_id in run_ids]
    training = any(info is not None and info.state in rf.LIVE_STATES for info in infos)
    return REFRESH_LIVE_S if training else REFRESH_ENDED_S


def last_steps_label(steps: int | None) -> str:
    return "all" if steps is None else f"last {steps:,}"


def status_line(view: RunSnapshot) -> None:
    status = view.status or {}
    info = state.run_info(view.run_id)  # kept current by the file watcher: no read here
    run_state = info.state if info is not None else "unknown"
    step, max_steps = status.get("step", 0), status.get("max_steps")
    ago = time.time() - status["updated"] if isinstance(status.get("updated"), (int, float)) else None
    parts = [f"{view.run_id}: {run_state}", f"step {step}" + (f" / {max_steps}" if max_steps else "")]
    if ago is not None:
        parts.append(f"updated {ago:.0f} s ago")
    if status.get("message"):
        parts.append(str(status["message"]))
    st.text(" · ".join(parts))


def alert_banners(view: RunSnapshot, limit: int = 3, full: int | None = None) -> None:
    """The newest alert of each code, most severe first, with its numbers and remedy. full: how many
    are shown open (all by default); the rest fold into one expander whose label names them, so a
    run with many alerts does not push the Live page's charts below the fold."""
    alerts = live_data.latest_alerts_by_code(live_data.alerts_from_events(view.events))
    shown = alerts[:limit]
    opened, folded = (shown, []) if full is None else (shown[:full], shown[full:])
    off = layout.not_restartable(view.status)
    for alert in opened:
        alert_banner(view.run_id, alert, off)
    if folded:
        with st.expander(escape(live_data.folded_label(folded))):
            for alert in folded:
                alert_banner(view.run_id, alert, off)
    if len(alerts) > limit:
        more = len(alerts) - limit
        st.caption(f"{more} more alert kind{'s' if more > 1 else ''}: see the Diagnosis page.")


def alert_banner(run_id: str, alert: dict, off: str | None) -> None:
    """One alert: severity, headline and message, its numbers, its remedies and their buttons."""
    severity = str(alert.get("severity", "info"))
    lines = [f"**{escape(severity.upper())}** · {escape(headline(alert))}: {escape(str(alert.get('message', '')))}"]
    evidence = live_data.format_evidence(alert.get("evidence") if isinstance(alert.get("evidence"), dict) else None)
    if evidence:
        lines.append("Numbers: " + escape(evidence))
    lines += ["Remedy: " + escape(line) for line in live_data.format_remedies(alert)]
    BANNER.get(severity, st.info)("\n\n".join(lines))
    remedy_buttons(run_id, alert, off)


def remedy_buttons(run_id: str, alert: dict, off: str | None = None, limit: int = 3) -> None:
    """A button per config remedy, as it says to start: a fork opens the prefilled fork form, a new
    run starts at once from the run's config. A code change or "no action" gets no button. off: why
    the buttons are disabled (a script's run: we cannot restart it)."""
    for n, remedy in enumerate(live_data.config_remedies(alert)[:limit]):
        sets = live_data.remedy_sets(remedy)
        key = f"remedy_{run_id}_{alert.get('code')}" + (f"_{n}" if n else "")
        start = {remedies.NEW: "New run with ", remedies.SCRIPT: "In your script: "}.get(
            remedy.get("start"), "Fork with "
        )
        label = start + ", ".join(sets)
        # Both come from the run's files and Streamlit renders markdown in them: shown literally.
        why = escape(str(remedy.get("why", "")))
        if not st.button(
            escape(label), help=off or why, key=key, icon=":material/call_split:", disabled=off is not None
        ):
            continue
        if remedy.get("start") == remedies.NEW:
            result = run_forms.start_new_from_run(state.runs_dir(), run_id, sets)
            st.session_state["flash"] = (
                f"Started {result.run_id} (pid {result.pid}) from {run_id}'s config with {', '.join(sets)}."
                if result.ok
                else "Could not start it: " + "; ".join(result.field_errors.values())
            )
            if result.ok:
                state.note_change(result.run_id)
        else:
            layout.open_fork_form(run_id, sets)
        st.rerun()


def metric_tiles(view: RunSnapshot) -> None:
    series = [s for s, _, _ in tiles.SERIES]
    latest = live_data.latest_with_change(view.metrics_view.tail(live_data.TAIL_ROWS), series)
    if not latest:
        st.caption("No metrics yet: the first row appears after log_interval steps.")
        return
    st.html(tiles.block(latest))


def chart_grid(
    views: list[RunSnapshot],
    x: str,
    log_y: bool,
    smoothing: float,
    last_steps: int | None = None,
    slow: bool = False,
) -> int:
    """The charts of charts.CHARTS (those with Chart.slow == slow) that the runs have series for,
    two to a row (one alone takes the width); how many it drew."""
    frames = {v.run_id: v.metrics_view for v in views if not v.metrics_view.empty}
    if not frames:
        if not slow:  # said once, by the part on top
            st.info("Waiting for the first metrics row...")
        return 0
    low = None
    if last_steps is not None:  # the newest step of any run shown, less the zoom
        low = max(int(view.tail(1)["step"].iloc[-1]) for view in frames.values()) - last_steps + 1
    tables = []
    for chart in (c for c in charts.CHARTS if c.slow == slow):
        weight = smoothing if chart.smooth else 0.0
        long = charts.series_table(
            frames,
            list(chart.series),
            x=x,
            smoothing=weight,
            positive_only=log_y and chart.log_applies,
            low=low,
            max_points=MAX_POINTS if low is None else ZOOM_MAX_POINTS,
        )
        if long.num_rows:
            tables.append((chart, weight, long))
    # Two to a row; a part with one chart (the loss, on top) gives it the page's width.
    cols = st.columns(min(2, len(tables))) if tables else []
    for drawn, (chart, weight, long) in enumerate(tables):
        with cols[drawn % len(cols)]:
            newest = f" · step {pc.max(long['x']).as_py():.0f}" if x == charts.X_STEP else ""
            st.caption(f"{chart.title} · {long.num_rows} points{newest}")
            data, spec = charts.line_chart(
                long, x, chart.y_title, log_y=log_y and chart.log_applies, smoothed=weight > 0, band=chart.band
            )
            st.vega_lite_chart(data, spec, width="stretch", key=f"chart_{chart.series[0]}")
    return len(tables)


def render(run_ids: list[str], x: str, log_y: bool, smoothing: float, last_steps: int | None = None) -> None:
    """One live refresh (its server time goes to DASHBOARD_TIMING_LOG when set, see app.timing).
    last_steps: draw only the newest that many steps (the step axis), else all."""
    with timing.logged("live"):
        _render(run_ids, x, log_y, smoothing, last_steps)


def render_slow(run_ids: list[str], x: str, log_y: bool, smoothing: float, last_steps: int | None = None) -> None:
    """The charts below the loss (learning rate, gradients, speed, resources...), refreshed every
    REFRESH_SLOW_S."""
    with timing.logged("live-slow"):
        views = [v for v in (state.run_view(r) for r in run_ids) if v.exists]
        heading = st.container()
        drawn = chart_grid(views, x, log_y, smoothing, last_steps, slow=True)
        if len(views) == 1:
            grad_maps(views[0])
        if drawn:
            heading.subheader(
                "Schedule, gradients, speed and resources",
                help=f"Refreshed every {REFRESH_SLOW_S:.0f} s; the tiles above show their newest values at each refresh of the loss, "
                "and the doctor's alerts appear at once. Each chart redrawn costs the browser CPU that a run on "
                "this machine would use.",
            )


def grad_maps(view: RunSnapshot) -> None:
    """One run's per-parameter gradient norms and update ratios (its probes: run.watch, our
    trainer's probe_interval) as heatmaps, behind a toggle: a map of a hundred parameters is
    the page's largest chart, and the browser redraws it at each refresh."""
    grads = view.grads
    if grads is None or grads.empty:
        return
    params = sum(c.startswith(f"{rf.GRAD_NORMS}/") for c in grads.columns)
    if not st.toggle(f"Gradients per parameter ({params} parameters, {len(grads)} probes)", key="live_grad_maps"):
        return
    for kind, title in grad_map.KINDS.items():
        cells = grad_map.grad_cells(grads, kind)
        if cells.empty:
            continue
        st.caption(f"{title} per parameter · {cells['step'].nunique()} probes · newest step {cells['step'].max()}")
        st.altair_chart(grad_map.heatmap(cells, title), width="stretch", key=f"grad_map_{kind}")
        dead = grad_map.dead_params(cells)
        if dead:
            more = f" and {len(dead) - 8} more" if len(dead) > 8 else ""
            st.caption(f"exactly 0 at the newest probe (red): {', '.join(dead[:8])}{more}")


def _render(run_ids: list[str], x: str, log_y: bool, smoothing: float, last_steps: int | None) -> None:
    views = [state.run_view(r) for r in run_ids]
    for view in views:
        if not view.exists:
            layout.warning(view.error or f"run {view.run_id} is gone")
            continue
        if view.error:
            layout.warning(view.error)
        status_line(view)
        layout.skipped_note(view)
        alert_banners(view, full=1)
    live = [v for v in views if v.exists]
    if len(live) == 1:
        metric_tiles(live[0])
    chart_grid(live, x, log_y, smoothing, last_steps)
