"""Dashboard figures in a real browser (headless Debian chromium through playwright).

    python benchmarks/dashboard_latency.py [--appends 30] [--rows 1000000] [--writers 10]
                                           [--parts append,big,many,cost] [--steady-s 20]

1. append-to-visible: a metrics row is logged and flushed; time until the Live page's loss caption
   shows its step (median, p95 over N appends; target p95 <= 1.5 s).
2. a run with ROWS metric rows: time from clicking its Live link (fresh server) to the first chart
   drawn (target <= 2 s), with the server's share (the cold read, the whole first fragment run).
   The Runs page is opened first and the link clicked as soon as it shows, so the runs table's
   read-ahead of the newest runs (app/prefetch.py) has had only that long to work: the cold read
   ("load") overlaps the click instead of following it, as it does for a user, only more so;
   then the same in a new tab; then the server time of each live refresh while rows are appended
   (target <= 100 ms), and of whole Live page reruns under AppTest, in-process.
3. WRITERS runs training at once (writer processes appending 10 rows/s each) with the Runs and Live
   pages open in two tabs: append-to-visible latency and server refresh time again, for the Live
   page's fragment ("live") and the Runs page's table fragment ("runs").

4. cost: what watching takes from training. One run logging 10 rows/s with the Live page open:
   CPU cores used by the Streamlit server process and by Chromium (all its processes) over
   2 x steady-s seconds, with our .streamlit/config.toml and with Streamlit's default forced
   gc.collect after every script run (STREAMLIT_RUNNER_POST_SCRIPT_GC=true) for comparison.

Server times come from the dashboard itself (DASHBOARD_TIMING_LOG, app/timing.py): wall time of
each fragment run, from its first read to its last element, and the script thread's CPU time
("_cpu_ms"), which on a busy machine is the more stable of the two.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from app.harness import chromium, dashboard
from app.timing import TIMING_LOG_ENV, read_log
from trainer.rundir import run_format as rf
from trainer.rundir.writer import open_run

ROOT = Path(__file__).resolve().parents[1]

CAPTION_STEP_JS = """(step) => { const m = document.body.innerText.match(/Loss · \\d+ points · step (\\d+)/);
    return m !== null && +m[1] >= step; }"""

# A run written by the real writer at `rate` rows/s on a fixed schedule (it catches up after a stall);
# SIGTERM finishes it (the last rows flushed) and it prints how many rows it logged.
WRITER_SCRIPT = """
import signal, sys, time, math
from trainer.rundir.writer import open_run
run = open_run({runs!r}, {run_id!r}, config={{"task": "char_lm", "max_steps": 10**9}})
run.set_status(state="running", task="char_lm", max_steps=10**9)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
step, started = 0, time.monotonic()
while not stopping:
    step += 1
    run.log(step, {{"train/loss": 2 + math.sin(step / 50), "lr": 1e-3, "grad/norm": 1.0}})
    time.sleep(max(0.0, started + step / {rate} - time.monotonic()))
run.finish("stopped")
print(step, flush=True)
"""


def start_writer(runs_dir, run_id, rate=10, **popen_args) -> subprocess.Popen:
    """WRITER_SCRIPT in its own process and session."""
    script = WRITER_SCRIPT.format(runs=str(runs_dir), run_id=run_id, rate=rate)
    return subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.DEVNULL, start_new_session=True, **popen_args
    )


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# Two tabs open at once: without these, Chromium throttles the background tab's timers (and so
# Streamlit's run_every) to about once a minute.
KEEP_TABS_LIVE = [
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def live_refreshes_while_appending(page, timing_log: Path, metrics: Path, step: int, seconds: int):
    """Append 10 rows a second after `step` to metrics for `seconds` while the page shows them (a run
    that goes on training): the Live fragment's server times from the dashboard's log (wall, CPU)."""
    timing_log.write_text("")
    for _ in range(seconds):
        with open(metrics, "a") as f:
            for _ in range(10):
                step += 1
                f.write(json.dumps({"step": step, "time": time.time(), "train/loss": 1.5, "lr": 1e-3}) + "\n")
        page.wait_for_timeout(1000)
    return read_log(timing_log).get("live", []), read_log(timing_log, cpu=True).get("live", [])


def ms_summary(values):
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(percentile(values, 0.95) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def ms_by_label(log_path):
    """Wall and CPU time per fragment kind ("live", "runs"), in ms."""
    out = {f"{label}_refresh_in_server_ms": ms_summary(values) for label, values in read_log(log_path).items()}
    for label, values in read_log(log_path, cpu=True).items():
        out[f"{label}_refresh_cpu_ms"] = ms_summary(values)
    return out


def summary(values):
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "max_s": round(max(values), 3),
    }


def open_live(page, url, run_id):
    page.goto(url)
    page.locator(f".st-key-view_{run_id} a").click(timeout=60_000)
    page.wait_for_url("**/live", timeout=60_000)


def append_latency(page, writer, start_step, appends):
    """Log one row, flush it to disk, wait until the browser shows its step."""
    latencies = []
    step = start_step
    for _ in range(appends):
        step += 1
        page.wait_for_timeout(300 + (step * 37) % 400)  # land at different phases of the 1 s timer
        writer.log(step, {rf.TRAIN_LOSS: 2.0 + 0.001 * step, rf.LR: 1e-3})
        writer.flush()
        t0 = time.perf_counter()
        page.wait_for_function(CAPTION_STEP_JS, arg=step, polling=10, timeout=30_000)
        latencies.append(time.perf_counter() - t0)
    return latencies, step


def live_run(runs_dir, run_id, rows=50):
    writer = open_run(runs_dir, run_id, config={"task": "char_lm", "max_steps": 10**9})
    for step in range(1, rows + 1):
        writer.log(step, {rf.TRAIN_LOSS: 3.0 - step * 0.001, rf.LR: 1e-3})
    writer.set_status(state=rf.RUNNING, step=rows, task="char_lm", max_steps=10**9)
    writer.flush()
    return writer


def big_run(runs_dir, run_id, rows):
    """A finished run with `rows` metric rows, written as the writer would (one json line each)."""
    run_dir = runs_dir / run_id
    writer = open_run(runs_dir, run_id, config={"task": "char_lm", "max_steps": rows})
    writer.finish(rf.FINISHED)
    t = time.time() - rows
    with open(run_dir / rf.METRICS_FILE, "w") as f:
        chunk = []
        for step in range(1, rows + 1):
            loss = 4.0 * math.exp(-step / (rows / 5)) + 1.0 + (3.0 if step == rows // 3 else 0.0)
            chunk.append(
                json.dumps(
                    {
                        "step": step,
                        "time": t + step,
                        "train/loss": loss,
                        "lr": 1e-3,
                        "grad/norm": 1.0 + (step % 97) / 97,
                        "speed/steps_per_s": 10.0,
                    },
                    separators=(",", ":"),
                )
            )
            if len(chunk) == 50_000:
                f.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            f.write("\n".join(chunk) + "\n")
    status = json.loads((run_dir / rf.STATUS_FILE).read_text())
    status.update(step=rows, max_steps=rows)
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    return run_dir


def server_refresh_ms(runs_dir, run_id, appends=10, append_rows=10):
    """Median time of a full Live page rerun (AppTest, in-process) after rows were appended."""
    os.environ["TRAINER_RUNS_DIR"] = str(runs_dir)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=120)
    at.session_state["selected_runs"] = [run_id]
    at.run()
    at.switch_page(str(ROOT / "pages" / "live.py")).run()
    metrics = runs_dir / run_id / rf.METRICS_FILE
    last = int(json.loads(metrics.read_bytes().splitlines()[-1])["step"])
    times = []
    for _ in range(appends):
        with open(metrics, "a") as f:
            for _ in range(append_rows):
                last += 1
                f.write(json.dumps({"step": last, "time": time.time(), "train/loss": 1.5, "lr": 1e-3}) + "\n")
        time.sleep(0.3)  # past the shared reader's refresh throttle
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    return round(statistics.median(times) * 1000, 1), round(max(times) * 1000, 1)


def bench_append(tmp, args):
    """1. append-to-visible, one run, one tab."""
    runs_dir = tmp / "runs1"
    runs_dir.mkdir()
    writer = live_run(runs_dir, "latency")
    with dashboard(runs_dir) as url, chromium() as page:
        open_live(page, url, "latency")
        page.wait_for_function(CAPTION_STEP_JS, arg=50, polling=10, timeout=60_000)
        latencies, _ = append_latency(page, writer, 50, args.appends)
    writer.finish(rf.STOPPED)
    return summary(latencies)


def bench_big(tmp, args):
    """2. a run with many rows: first chart (fresh server, then a new tab), live refresh time."""
    runs_dir = tmp / "runs2"
    runs_dir.mkdir()
    t0 = time.perf_counter()
    big_run(runs_dir, "big", args.rows)
    print(f"wrote {args.rows} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    timing_log = tmp / "big-refresh-times.txt"
    with dashboard(runs_dir, {TIMING_LOG_ENV: str(timing_log)}) as url, chromium() as page:
        page.goto(url)
        page.locator(".st-key-view_big a").wait_for(timeout=60_000)
        t0 = time.perf_counter()
        page.locator(".st-key-view_big a").click()
        page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=120_000)
        first_chart = time.perf_counter() - t0
        page.goto(url)
        page.locator(".st-key-view_big a").click()
        t0 = time.perf_counter()
        page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=120_000)
        warm_chart = time.perf_counter() - t0
        cold = read_log(timing_log)  # the server's share of the first chart: reading, then drawing
        # Live refreshes of the big run while rows are appended (a training run that goes on).
        in_server, in_server_cpu = live_refreshes_while_appending(
            page, timing_log, runs_dir / "big" / rf.METRICS_FILE, args.rows, seconds=20
        )
    median_ms, max_ms = server_refresh_ms(runs_dir, "big")
    return {
        "rows": args.rows,
        "first_chart_cold_s": round(first_chart, 2),
        "first_chart_server_read_s": round(cold.get("load", [math.nan])[0], 2),
        "first_chart_server_live_fragment_s": round(cold.get("live", [math.nan])[0], 2),
        "first_chart_warm_s": round(warm_chart, 2),
        "live_refresh_in_server_ms": ms_summary(in_server),
        "live_refresh_cpu_ms": ms_summary(in_server_cpu),
        "whole_page_rerun_apptest_median_ms": median_ms,
        "whole_page_rerun_apptest_max_ms": max_ms,
    }


def bench_many(tmp, args):
    """3. many runs training at once, Runs and Live pages open."""
    runs_dir = tmp / "runs3"
    runs_dir.mkdir()
    procs = [start_writer(runs_dir, f"w{i}") for i in range(args.writers)]
    writer = live_run(runs_dir, "latency")
    many_log = tmp / "many-refresh-times.txt"
    try:
        with (
            dashboard(runs_dir, {TIMING_LOG_ENV: str(many_log)}) as url,
            chromium(extra_args=KEEP_TABS_LIVE) as page,
        ):
            home = page.context.new_page()
            home.goto(url)
            open_live(page, url, "latency")
            page.wait_for_function(CAPTION_STEP_JS, arg=50, polling=10, timeout=60_000)
            many_log.write_text("")  # steady state only: not the first page loads
            latencies, _ = append_latency(page, writer, 50, max(10, args.appends // 2))
            page.wait_for_timeout(args.steady_s * 1000)  # more refreshes of both pages for the p95
            home.close()
        median_ms, max_ms = server_refresh_ms(runs_dir, "latency", appends=5)
        return {
            **ms_by_label(many_log),
            "writers": args.writers,
            **summary(latencies),
            "whole_page_rerun_apptest_median_ms": median_ms,
            "whole_page_rerun_apptest_max_ms": max_ms,
        }
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        writer.finish(rf.STOPPED)


def cpu_seconds(select, processes=None) -> float:
    """User + system CPU seconds so far of the processes whose command line select() accepts, among
    `processes` (default: all; on a shared machine, pass this process's descendants)."""
    total = 0.0
    for proc in psutil.process_iter() if processes is None else processes:
        try:
            if select(" ".join(proc.cmdline())):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
    return total


def page_cores(page, seconds: float, server: psutil.Process | None = None) -> tuple[float, float | None]:
    """(Chromium's cores, the server's cores or None) while `page` stays open for `seconds`: the
    Chromium processes this process started (through playwright), the server with its children."""

    def server_s() -> float | None:
        return None if server is None else cpu_seconds(lambda _: True, [server, *server.children(recursive=True)])

    mine = psutil.Process().children(recursive=True)
    browser0, server0, t0 = cpu_seconds(lambda c: "chromium" in c, mine), server_s(), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    elapsed = time.monotonic() - t0
    browser = (cpu_seconds(lambda c: "chromium" in c, mine) - browser0) / elapsed
    return browser, None if server is None else (server_s() - server0) / elapsed


def bench_cost(tmp, args):
    """4. CPU used by the dashboard while the Live page follows one training run."""
    out = {}
    for label, env in (("ours", {}), ("streamlit_default_post_script_gc", {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "true"})):
        runs_dir = tmp / f"runs4-{label}"
        runs_dir.mkdir()
        writer = start_writer(runs_dir, "w0")
        try:
            with dashboard(runs_dir, env) as url, chromium() as page:
                port = url.rsplit(":", 1)[1]
                groups = {
                    "server_cores": lambda c, port=port: "streamlit" in c and f"--server.port {port}" in c,
                    "chromium_cores": lambda c: "chromium" in c,
                }
                open_live(page, url, "w0")
                page.wait_for_timeout(8000)  # past the first chart loads
                before = {k: cpu_seconds(f) for k, f in groups.items()}
                t0 = time.perf_counter()
                page.wait_for_timeout(2 * args.steady_s * 1000)
                elapsed = time.perf_counter() - t0
                out[label] = {k: round((cpu_seconds(f) - before[k]) / elapsed, 3) for k, f in groups.items()}
        finally:
            writer.kill()
            writer.wait()
    return out


PARTS = {
    "append": ("append_to_visible", bench_append),
    "big": ("big_run", bench_big),
    "many": ("many_runs", bench_many),
    "cost": ("watching_cost", bench_cost),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--steady-s", type=int, default=20, help="extra seconds of refreshes in part 3")
    parser.add_argument(
        "--parts", default="append,big,many,cost", help="which figures, comma-separated: " + ",".join(PARTS)
    )
    args = parser.parse_args()
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    try:
        for part in args.parts.split(","):
            name, bench = PARTS[part.strip()]
            results[name] = bench(tmp, args)
            print(f"{name}:", results[name], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the big run alone is ~120 MB
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
