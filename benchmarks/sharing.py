"""Runs sharing one machine (issue 15): throughput of concurrent runs with `threads: auto` against one
run alone, and against the same runs with torch's default threads (every run takes every core).

    python benchmarks/sharing.py                    # default preset, 1 / 2 / 4 runs, auto and torch default
    python benchmarks/sharing.py --parts page       # what the Live page costs the run it watches

Each run is a real `python -m trainer run` started the way the dashboard starts one
(trainer.runs.process.start_new: thread share and OpenMP environment), on the default Shakespeare
preset. A run's speed is the median speed/steps_per_s of the rows it logged while every run of the
group was live, after SETTLE_S (start-up, and the 5 s a running trainer takes to see a new
neighbour). Figures:
- two runs: total throughput against one run alone (target >= 1.5x), and each run against one run
  alone with half the cores (threads=1 here; target >= 0.75x);
- four runs: total against one alone (target >= 1.5x);
- --parts page: one run's steps/s with the Live page open in Chromium against no page (target: the
  page costs <= 10%), alternated; --baseline DIR adds the Live page of another checkout's dashboard
  (`git archive COMMIT | tar -x -C DIR`) to the alternation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records
from trainer.rundir.status import run_state
from trainer.runs import control, process

SETTLE_S = 8.0


def start(runs_dir: Path, run_id: str, threads: str, max_steps: int) -> None:
    sets = [f"max_steps={max_steps}", "eval_interval=100000", "sample_interval=100000", f"threads={threads}"]
    sets += ["checkpoint_interval=100000", "log_interval=10"]
    process.start_new(None, sets, runs_dir, run_id)


def wait_running(run_dir: Path, timeout_s: float = 120.0) -> float:
    deadline = time.monotonic() + timeout_s
    while not (run_dir / rf.METRICS_FILE).exists():
        if time.monotonic() > deadline or run_state(run_dir) in (rf.FAILED, rf.CRASHED):
            raise RuntimeError(f"{run_dir.name} did not start; see {run_dir / rf.LOG_FILE}")
        time.sleep(0.2)
    return time.time()


def group(runs_dir: Path, name: str, n: int, threads: str, seconds: float) -> list[float]:
    """n runs at once for `seconds` of overlap; each run's median steps/s over the overlap."""
    ids = [f"{name}-{i}" for i in range(n)]
    for run_id in ids:
        start(runs_dir, run_id, threads, max_steps=10**6)
    begun = max(wait_running(runs_dir / r) for r in ids)
    time.sleep(SETTLE_S + seconds)
    for run_id in ids:
        control.stop(runs_dir, run_id, grace_s=30)
    window = (begun + SETTLE_S, begun + SETTLE_S + seconds)
    speeds = []
    for run_id in ids:
        rows = [
            r[rf.STEPS_PER_S]
            for r in read_records(runs_dir / run_id / rf.METRICS_FILE)
            if rf.STEPS_PER_S in r and window[0] <= r["time"] <= window[1]
        ]
        speeds.append(statistics.median(rows) if rows else float("nan"))
    return speeds


def parts_runs(args, runs_dir: Path) -> None:
    alone = group(runs_dir, "alone", 1, "auto", args.seconds)[0]
    half = group(runs_dir, "half", 1, "1", args.seconds)[0]
    print(f"one run alone (auto: all cores):      {alone:6.1f} steps/s")
    print(f"one run alone, half the cores (1):    {half:6.1f} steps/s")
    for threads, label in (("auto", "threads auto"), (str(args.cores), "torch default")):
        two = group(runs_dir, f"two-{threads}", 2, threads, args.seconds)
        print(
            f"two runs, {label:13}: {two[0]:5.1f} + {two[1]:5.1f} = {sum(two):5.1f} steps/s, "
            f"{sum(two) / alone:.2f}x one alone (target >= 1.5x); each {min(two) / half:.2f}x of alone on half "
            "the cores (target >= 0.75x)"
        )
    for threads, label in (("auto", "threads auto"), (str(args.cores), "torch default")):
        four = group(runs_dir, f"four-{threads}", 4, threads, args.seconds)
        print(
            f"four runs, {label:13}: total {sum(four):5.1f} steps/s ({', '.join(f'{s:.1f}' for s in four)}), "
            f"{sum(four) / alone:.2f}x one alone (target >= 1.5x)"
        )


def parts_page(args, runs_dir: Path) -> None:
    from app.harness import ROOT, chromium, dashboard

    roots = {"Live open": ROOT} | ({"Live open, baseline": args.baseline.resolve()} if args.baseline else {})
    results = {label: [] for label in ["no page", *roots]}
    for repeat in range(args.repeats):
        for n, label in enumerate(results):
            run_id = f"page-{repeat}-{n}"
            # Each dashboard only for its own turn: one left open would tail the other turns' runs.
            with dashboard(runs_dir, root=roots.get(label, ROOT)) as url:
                start(runs_dir, run_id, "auto", max_steps=10**6)
                begun = wait_running(runs_dir / run_id)
                if label in roots:
                    with chromium() as page:
                        page.goto(f"{url}/live?run={run_id}")
                        time.sleep(SETTLE_S + args.seconds)
                else:
                    time.sleep(SETTLE_S + args.seconds)
            control.stop(runs_dir, run_id, grace_s=30)
            rows = [
                r[rf.STEPS_PER_S]
                for r in read_records(runs_dir / run_id / rf.METRICS_FILE)
                if rf.STEPS_PER_S in r and begun + SETTLE_S <= r["time"] <= begun + SETTLE_S + args.seconds
            ]
            if not rows:
                raise RuntimeError(
                    f"{run_id} ({label}) logged no speed in the window; see {runs_dir / run_id / rf.LOG_FILE}"
                )
            results[label].append(statistics.median(rows))
    base = statistics.median(results["no page"])
    print(f"steps/s, no page: {', '.join(f'{v:.1f}' for v in results['no page'])} (median {base:.1f})")
    for label in roots:
        watched = statistics.median(results[label])
        print(f"steps/s, {label}: {', '.join(f'{v:.1f}' for v in results[label])} (median {watched:.1f})")
        print(f"{label}: the Live page costs the run {100 * (1 - watched / base):.1f}% of its steps/s (target <= 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["runs"], choices=["runs", "page"])
    parser.add_argument("--seconds", type=float, default=20.0, help="overlap measured per group")
    parser.add_argument("--repeats", type=int, default=2, help="alternations for --parts page")
    parser.add_argument("--cores", type=int, default=None, help="torch's default threads (all cores)")
    parser.add_argument("--baseline", type=Path, help="--parts page: also another checkout's dashboard, alternated")
    args = parser.parse_args()
    args.cores = args.cores or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        if "runs" in args.parts:
            parts_runs(args, runs_dir)
        if "page" in args.parts:
            parts_page(args, runs_dir)


if __name__ == "__main__":
    main()
