"""Runs of any length: what opening and watching a run costs at 1k, 1M and 10M metric rows
(issue 13), with the metrics cache (trainer/rundir/metrics_cache.py) against the reader before it.

    PYTHONPATH=. python benchmarks/long_runs.py [--rows 1000,1000000,10000000] [--dir /tmp/long-runs]
                                                [--parts open,dashboard] [--baseline /work/main] [--keep]

Each run has the shape of benchmarks/dashboard_latency.py's big run (step, time, train/loss with one
spike, lr, grad/norm, speed/steps_per_s), written once into --dir by polars (~1.3 GB for 10M rows;
check `df -h` first) and deleted at the end unless --keep.

open: in a fresh process each, alternated: the reader of --baseline (the tree before the cache:
a cold parse of every line), ours on first-ever open (no cache: parse, then write the cache), and
ours with the cache present. Wall and CPU time of RunReader(run_dir), rows per second, and the
process's RSS after it; the baseline's median time over ours (above 1: ours is faster per row).

dashboard (real Chromium through app/harness.py, a fresh server per run, alternated over sizes,
twice): time from clicking the run's link on the runs table to the Live page's first chart, with
the cache present; the server's RSS then (after 5 s of Live refreshes) against an empty server
on the same page; then 20 s of Live refreshes while 10 rows/s are appended, server time per
refresh from the dashboard's own log (app/timing.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
from dashboard_latency import live_refreshes_while_appending, ms_summary

from app.harness import chromium, dashboard
from app.timing import TIMING_LOG_ENV, read_log
from trainer.rundir import run_format as rf
from trainer.rundir.metrics_cache import cache_dir
from trainer.rundir.writer import open_run

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "big"
CHART = ".vega-embed canvas, .vega-embed svg"

OPEN_SCRIPT = """
import json, os, sys, time, psutil
from pathlib import Path
from trainer.rundir.reader import RunReader
t0, cpu0 = time.perf_counter(), time.process_time()
reader = RunReader(Path(sys.argv[1]))
seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
view = getattr(reader, "metrics_view", None)
rows = len(view) if view is not None else len(reader.metrics)
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": rows, "rss_mb": psutil.Process().memory_info().rss / 2**20}))
"""


def write_run(runs_dir: Path, rows: int) -> Path:
    """A finished run with `rows` metric rows (kept in --dir: written once, ~1 min for 10M)."""
    run_dir = runs_dir / RUN_ID
    metrics = run_dir / rf.METRICS_FILE
    done = run_dir / "written"
    if done.exists():
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    writer = open_run(runs_dir, RUN_ID, config={"task": "char_lm", "max_steps": rows})
    writer.finish(rf.FINISHED)
    t = time.time() - rows
    with open(metrics, "wb") as f:
        for start in range(1, rows + 1, 1_000_000):
            step = np.arange(start, min(rows, start + 999_999) + 1)
            loss = 4.0 * np.exp(-step / (rows / 5)) + 1.0 + np.where(step == rows // 3, 3.0, 0.0)
            frame = pl.DataFrame(
                {
                    "step": step,
                    "time": t + step,
                    "train/loss": loss,
                    "lr": np.full(len(step), 1e-3),
                    "grad/norm": 1.0 + (step % 97) / 97,
                    "speed/steps_per_s": np.full(len(step), 10.0),
                }
            )
            buffer = io.BytesIO()
            frame.write_ndjson(buffer)
            f.write(buffer.getvalue())
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status.update(step=rows, max_steps=rows)
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    done.write_text("")
    return run_dir


def open_once(run_dir: Path, tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", OPEN_SCRIPT, str(run_dir)], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_open(runs: dict[int, Path], args) -> dict:
    results = {}
    for rows, runs_dir in runs.items():
        run_dir = runs_dir / RUN_ID
        out = {"baseline": [], "first_open": [], "cached_open": []}
        for _ in range(args.repeats):
            out["baseline"].append(open_once(run_dir, Path(args.baseline)))
            shutil.rmtree(cache_dir(run_dir / rf.METRICS_FILE), ignore_errors=True)
            out["first_open"].append(open_once(run_dir, ROOT))
            out["cached_open"].append(open_once(run_dir, ROOT))
        summary = {}
        for label, runs_of in out.items():
            seconds = [r["seconds"] for r in runs_of]
            summary[label] = {
                "seconds": [round(s, 3) for s in seconds],
                "cpu_seconds": [round(r["cpu_seconds"], 3) for r in runs_of],
                "rows_per_s_best": round(rows / min(seconds)),
                "rss_mb": [round(r["rss_mb"]) for r in runs_of],
            }
        for kind in ("seconds", "cpu_seconds"):  # > 1: the first open is faster per row than the baseline
            summary[f"baseline_over_first_open_{kind}"] = round(
                statistics.median(summary["baseline"][kind]) / statistics.median(summary["first_open"][kind]), 2
            )
        results[rows] = summary
        print(rows, json.dumps(summary), flush=True)
    return results


def server_process(url: str) -> psutil.Process:
    port = url.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        if "streamlit" in " ".join(proc.info["cmdline"] or []) and f"--server.port {port}" in " ".join(
            proc.info["cmdline"] or []
        ):
            return proc
    raise RuntimeError("streamlit server not found")


def memory_mb(proc: psutil.Process) -> dict:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kb = {name: int(fields[name].split()[0]) for name in ("VmRSS", "RssAnon", "RssFile")}
    return {name: round(value / 1024) for name, value in kb.items()}


def bench_empty(tmp: Path) -> dict:
    runs_dir = tmp / "empty"
    runs_dir.mkdir(exist_ok=True)
    with dashboard(runs_dir) as url, chromium() as page:
        page.goto(url)
        page.get_by_text("Train Shakespeare").first.wait_for(timeout=60_000)
        page.wait_for_timeout(5000)
        return memory_mb(server_process(url))


def bench_dashboard_once(runs_dir: Path, tmp: Path, rows: int, watch_s: int) -> dict:
    log = tmp / f"timing-{rows}.txt"
    log.write_text("")
    with dashboard(runs_dir, {TIMING_LOG_ENV: str(log)}) as url, chromium() as page:
        page.goto(url)
        link = page.locator(f".st-key-view_{RUN_ID} a")
        link.wait_for(timeout=60_000)
        t0 = time.perf_counter()
        link.click()
        page.locator(CHART).first.wait_for(timeout=300_000)
        first_chart = time.perf_counter() - t0
        first = read_log(log)
        page.wait_for_timeout(5000)
        memory = memory_mb(server_process(url))
        # Steps past anything logged by an earlier repeat.
        live, live_cpu = live_refreshes_while_appending(
            page, log, runs_dir / RUN_ID / rf.METRICS_FILE, rows + int(1e9), seconds=watch_s
        )
        memory_after = memory_mb(server_process(url))
    return {
        "first_chart_s": round(first_chart, 3),
        "server_load_s": round(first.get("load", [float("nan")])[0], 3),
        "server_first_live_s": round(first.get("live", [float("nan")])[0], 3),
        "server_memory_mb": memory,
        "server_memory_after_appends_mb": memory_after,
        "live_refresh_ms": ms_summary(live) if live else None,
        "live_refresh_cpu_ms": ms_summary(live_cpu) if live_cpu else None,
    }


def bench_dashboard(runs: dict[int, Path], tmp: Path, args) -> dict:
    for runs_dir in runs.values():  # the cache present (made here if an earlier part did not)
        open_once(runs_dir / RUN_ID, ROOT)
    empty = bench_empty(tmp)
    print("empty server", empty, flush=True)
    out: dict = {"empty_server_memory_mb": empty}
    for rep in range(args.repeats):
        for rows, runs_dir in runs.items():
            # Rows appended by an earlier repeat are part of the file: re-open with its cache
            # extended, as a user's next visit would.
            result = bench_dashboard_once(runs_dir, tmp, rows, args.watch_s)
            out.setdefault(rows, []).append(result)
            print(rows, rep, json.dumps(result), flush=True)
    small, big = min(runs), max(runs)
    firsts = {rows: [r["first_chart_s"] for r in out[rows]] for rows in runs}
    out["first_chart_median_s"] = {rows: statistics.median(v) for rows, v in firsts.items()}
    out["first_chart_big_over_small"] = round(statistics.median(firsts[big]) / statistics.median(firsts[small]), 2)
    live = [ms for r in out[big] if r["live_refresh_ms"] for ms in [r["live_refresh_ms"]["p95_ms"]]]
    out["live_refresh_p95_ms_big"] = live
    out["server_memory_above_empty_mb_big"] = [r["server_memory_mb"]["VmRSS"] - empty["VmRSS"] for r in out[big]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000,1000000,10000000")
    parser.add_argument("--dir", default="/tmp/long-runs")
    parser.add_argument("--parts", default="open,dashboard")
    parser.add_argument("--baseline", default="/work/main", help="a checkout of the reader before the cache")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--watch-s", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the generated runs in --dir")
    args = parser.parse_args()
    base = Path(args.dir)
    runs = {}
    for rows in sorted(int(r) for r in args.rows.split(",")):
        runs_dir = base / f"rows-{rows}"
        runs_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_run(runs_dir, rows)
        print(f"run of {rows:,} rows ready in {time.perf_counter() - t0:.1f} s", flush=True)
        runs[rows] = runs_dir
    results = {"load_average": os.getloadavg()}
    tmp = Path(tempfile.mkdtemp(prefix="long-runs-"))
    try:
        if "open" in args.parts:
            results["open"] = bench_open(runs, args)
        if "dashboard" in args.parts:
            results["dashboard"] = bench_dashboard(runs, tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
