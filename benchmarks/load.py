"""Load test (issue 12): many runs logging fast into one runs directory while browsers watch.

    PYTHONPATH=. python benchmarks/load.py [--runs 20] [--rate 100] [--sessions 3] [--minutes 10]
                                           [--baseline DIR]

RUNS writer processes (the real writer: dashboard_latency.py's WRITER_SCRIPT, trainer.rundir.writer)
each log RATE rows/s into one runs directory. SESSIONS browser sessions in Chromium each keep the
Runs page and a Live page open, each Live page on a different run. Measured over MINUTES:

1. nothing dropped: at the end each writer is stopped (SIGTERM: it flushes, then prints how many
   rows it logged), and its metrics.jsonl must hold exactly steps 1..N, in order.
2. append to visible on Live (target p95 <= 1 s): a thread here tails the watched runs' metrics
   files and notes when each flush lands; each Live tab notes when its loss caption
   ("Loss · N points · step S") first shows each step. An append's latency is the time from its
   flush landing to the first caption showing its step or a later one.
3. the dashboard's own refresh times (app/timing.py's log): the Live fragment ("live") and the
   runs table ("runs"), wall and thread CPU time.
4. the Streamlit server's RSS at the start (pages open), every minute and at the end.

--baseline DIR: the same test first against another checkout's dashboard (`git archive COMMIT |
tar -x -C DIR`), then against this one, each in a fresh runs directory, so both see the machine's
load of the same few minutes.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from dashboard_latency import KEEP_TABS_LIVE, cpu_seconds, ms_by_label, open_live, start_writer, summary

from app.harness import ROOT, chromium, dashboard, server_pid
from app.timing import TIMING_LOG_ENV
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import JsonlTail, read_records

WAIT_MS = 120_000
# Notes in the page, every 20 ms, each new step the loss caption shows: [[epoch seconds, step], ...].
RECORD_CAPTION_JS = """() => {
  window.__seen = [];
  let last = -1;
  setInterval(() => {
    for (const el of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const m = el.textContent.match(/^Loss · \\d+ points · step (\\d+)/);
      if (m === null) continue;
      if (+m[1] !== last) { last = +m[1]; window.__seen.push([Date.now() / 1000, last]); }
      break;
    }
  }, 20);
}"""


class FlushWatch(threading.Thread):
    """Notes (epoch seconds, last step) each time new complete rows land in the watched metrics files."""

    def __init__(self, runs_dir: Path, run_ids: list[str], every_s: float = 0.01):
        super().__init__(daemon=True)
        self.tails = {run_id: JsonlTail(runs_dir / run_id / rf.METRICS_FILE) for run_id in run_ids}
        self.landed: dict[str, list[tuple[float, int]]] = {run_id: [] for run_id in run_ids}
        self.every_s = every_s
        self.done = threading.Event()

    def run(self) -> None:
        for tail in self.tails.values():
            tail.poll()  # what is there already landed before we watched
        while not self.done.wait(self.every_s):
            for run_id, tail in self.tails.items():
                records = tail.poll()
                if records:
                    self.landed[run_id].append((time.time(), int(records[-1]["step"])))


def append_latencies(landed: list[tuple[float, int]], seen: list[tuple[float, int]], end: float, grace_s: float):
    """(latencies in s, appends never shown): each flush's time to the first caption showing its
    step or a later one. Flushes within grace_s of the end are left out (they had no fair chance)."""
    latencies, never = [], 0
    for landed_at, step in landed:
        if landed_at > end - grace_s:
            continue
        shown = next((t for t, s in seen if s >= step and t >= landed_at - 0.05), None)
        if shown is None:
            never += 1
        else:
            latencies.append(max(0.0, shown - landed_at))
    return latencies, never


def check_rows(runs_dir: Path, logged: dict[str, int]) -> dict:
    """Each run's metrics.jsonl against what its writer says it logged: all of 1..N, in order, once."""
    problems = {}
    for run_id, count in logged.items():
        steps = [r.get("step") for r in read_records(runs_dir / run_id / rf.METRICS_FILE)]
        if steps != list(range(1, count + 1)):
            missing = len(set(range(1, count + 1)) - set(steps))
            problems[run_id] = f"logged {count}, file holds {len(steps)} rows ({missing} missing)"
    return {"rows_logged": sum(logged.values()), "runs_with_rows_dropped": problems}


def stop_writers(writers: dict[str, subprocess.Popen]) -> dict[str, int]:
    """SIGTERM every writer; {run_id: rows it logged} once each has flushed and exited."""
    for proc in writers.values():
        proc.send_signal(signal.SIGTERM)
    logged = {}
    for run_id, proc in writers.items():
        out, _ = proc.communicate(timeout=60)
        logged[run_id] = int(out.split()[-1]) if proc.returncode == 0 and out.split() else -1
    return logged


def ours() -> list[psutil.Process]:
    """This benchmark's processes (writers, server, Chromium): other users of the machine are not counted."""
    return psutil.Process().children(recursive=True)


def is_chromium(cmdline: str) -> bool:
    return "chromium" in cmdline


def is_writer(cmdline: str) -> bool:
    return "from trainer.rundir.writer import open_run" in cmdline


def rss_mb(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def measure(
    tmp: Path, runs: int, rate: float, sessions: int, seconds: float, rss_every_s: float = 60, root: Path = ROOT
) -> dict:
    """The whole load test in tmp (the dashboard of the checkout at root); returns its figures (see
    the module docstring)."""
    runs_dir = tmp / "runs"
    runs_dir.mkdir()
    timing_log = tmp / "refresh-times.txt"
    run_ids = [f"w{i:02d}" for i in range(runs)]
    watched = [run_ids[i * runs // sessions] for i in range(sessions)]  # spread over the table
    writers_started = time.monotonic()
    writers = {run_id: start_writer(runs_dir, run_id, rate, stdout=subprocess.PIPE, text=True) for run_id in run_ids}
    watch = FlushWatch(runs_dir, watched)
    try:
        with (
            dashboard(runs_dir, {TIMING_LOG_ENV: str(timing_log)}, root=root) as url,
            chromium(extra_args=KEEP_TABS_LIVE) as first,
        ):
            server = psutil.Process(server_pid(url))
            lives = []
            for i, run_id in enumerate(watched):
                home = first if i == 0 else first.context.new_page()
                home.goto(url)
                home.locator(f".st-key-row_{run_id}").wait_for(timeout=WAIT_MS)
                live = first.context.new_page()
                open_live(live, url, run_id)
                live.get_by_text("Loss · ", exact=False).first.wait_for(timeout=WAIT_MS)
                live.evaluate(RECORD_CAPTION_JS)
                lives.append(live)
            timing_log.write_text("")  # steady state only: not the first page loads
            watch.start()
            started = time.monotonic()
            cpu_before = server.cpu_times(), cpu_seconds(is_chromium, ours()), cpu_seconds(is_writer, ours())
            rss = [(0, rss_mb(server))]
            while (elapsed := time.monotonic() - started) < seconds:
                first.wait_for_timeout(1000 * min(seconds - elapsed, rss_every_s - elapsed % rss_every_s))
                rss.append((round(time.monotonic() - started), rss_mb(server)))
            end = time.time()
            cores = {
                "server": round((sum(server.cpu_times()[:2]) - sum(cpu_before[0][:2])) / seconds, 2),
                "chromium": round((cpu_seconds(is_chromium, ours()) - cpu_before[1]) / seconds, 2),
                "writers": round((cpu_seconds(is_writer, ours()) - cpu_before[2]) / seconds, 2),
            }
            seen = [[tuple(pair) for pair in live.evaluate("window.__seen")] for live in lives]
            watch.done.set()
            watch.join()
            refresh = ms_by_label(timing_log)
    finally:
        writing_s = time.monotonic() - writers_started
        logged = stop_writers(writers)
    latencies, never, gaps = [], 0, []
    for run_id, shown in zip(watched, seen):
        gaps += [b[0] - a[0] for a, b in zip(shown, shown[1:])]
        run_latencies, run_never = append_latencies(watch.landed[run_id], shown, end, grace_s=min(5.0, seconds / 3))
        latencies += run_latencies
        never += run_never
    return {
        "runs": runs,
        "rate_rows_per_s": rate,
        "sessions": sessions,
        "seconds": round(seconds),
        "rows_per_s_per_run_achieved": round(sum(logged.values()) / runs / writing_s, 1),
        **check_rows(runs_dir, logged),
        "append_to_visible": summary(latencies) if latencies else {"n": 0},
        "appends_never_shown": never,
        "caption_changes_seen": sum(len(shown) for shown in seen),
        "live_caption_update_interval": summary(gaps) if gaps else {"n": 0},
        **refresh,
        "cores_used": cores,
        "server_rss_mb": rss,
        "server_rss_growth_mb": round(rss[-1][1] - rss[0][1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100, help="rows/s each run logs")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--baseline", type=Path, help="another checkout's root, measured first")
    args = parser.parse_args()
    roots = ({"baseline": args.baseline.resolve()} if args.baseline else {}) | {"ours": ROOT}
    for label, root in roots.items():
        load_before = psutil.getloadavg()
        with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
            result = measure(Path(tmp), args.runs, args.rate, args.sessions, args.minutes * 60, root=root)
        result["load_average_before"] = [round(x, 2) for x in load_before]
        result["load_average_after"] = [round(x, 2) for x in psutil.getloadavg()]
        result["median_rss_mb"] = statistics.median(mb for _, mb in result["server_rss_mb"])
        print(json.dumps({"dashboard": label, **result}, indent=1), flush=True)


if __name__ == "__main__":
    main()
