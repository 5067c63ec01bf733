"""What the Runs page costs the browser with many live runs: Chromium's and the server's CPU while
one tab shows the runs table, against one tab on Live.

    PYTHONPATH=. python benchmarks/runs_table_cost.py [--runs 20] [--rate 20] [--seconds 15]
                                                      [--repeats 2] [--baseline DIR]

RUNS writer processes (dashboard_latency.py's WRITER_SCRIPT, the real writer) each log RATE rows/s
into one runs directory. For each page (the runs table at /, Live on the first run) a fresh server
and Chromium open it; after SETTLE_MS, over SECONDS: Chromium's CPU (all its processes) and the
server's, in cores. --baseline DIR: another checkout's dashboard (`git archive COMMIT | tar -x -C DIR`),
alternated with this one, on the same writers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from dashboard_latency import page_cores, start_writer

from app.harness import ROOT, chromium, dashboard, server_pid

SETTLE_MS = 10_000
PAGES = {"runs table": "/", "Live": "/live?run=w00"}


def measure(runs_dir: Path, root: Path, path: str, seconds: float) -> tuple[float, float]:
    """(Chromium, server) cores while one tab shows `path`."""
    with dashboard(runs_dir, root=root) as url, chromium() as page:
        page.goto(url + path)
        page.wait_for_timeout(SETTLE_MS)
        return page_cores(page, seconds, psutil.Process(server_pid(url)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20, help="rows/s each run logs")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="another checkout's root, measured alternately")
    args = parser.parse_args()
    roots = {"ours": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    cores: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="runs-table-cost-") as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        writers = [start_writer(runs_dir, f"w{n:02d}", rate=args.rate) for n in range(args.runs)]
        try:
            time.sleep(5)  # every writer has its status.json: the table has all its rows from the start
            for _ in range(args.repeats):
                for label, root in roots.items():
                    for page, path in PAGES.items():
                        key = f"{label}, {page}"
                        cores.setdefault(key, []).append(measure(runs_dir, root, path, args.seconds))
                        chromium_cores, server_cores = cores[key][-1]
                        print(f"{key}: Chromium {chromium_cores:.3f} cores, server {server_cores:.3f}", flush=True)
        finally:
            for writer in writers:
                writer.terminate()
            for writer in writers:
                writer.wait(30)
    out = {
        key: {
            "chromium_cores": [round(c, 3) for c, _ in values],
            "server_cores": [round(s, 3) for _, s in values],
            "chromium_median": round(statistics.median(c for c, _ in values), 3),
        }
        for key, values in cores.items()
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
