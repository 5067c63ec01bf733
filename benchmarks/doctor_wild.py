"""The doctor on runs from the wild (trainer.doctor.wildsuite): recall, false alarms and delay per code.

    python benchmarks/doctor_wild.py                        # the development block, seeds 0-99
    python benchmarks/doctor_wild.py --seeds 10 --names explode_slow,hf_linear
    python benchmarks/doctor_wild.py --report               # the fixed report block, seeds 1000-1199
    python benchmarks/doctor_wild.py --report --seeds 40    # its first 40 seeds (1000-1039)
    python benchmarks/doctor_wild.py --json scores.json     # also every run's score, for tables

Per code: runs, recall (an alert of that code at warning/critical at or after the onset), false
alarms per 100 healthy runs (healthy rows; failing runs count a warning before their onset), median
delay (log intervals from the onset for sudden failures, and rows of the series that shows the
failure: evals, samples, probes; fraction of the run from the evidence step for slow ones), and each
miss and false alarm as name-seed. Never tune the doctor on the report
block: it is for reporting only (docs/doctor.md, "The second generator").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from trainer.doctor.wildsuite import DEV_SEEDS, NAMES, REPORT_SEEDS, by_code, run_suite


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict, healthy_runs: int) -> None:
    print(f"{'code':<22}{'runs':>6}{'recall':>8}{'FA/100h':>9}{'sudden (li)':>12}{'(rows)':>8}{'slow (run)':>12}")
    for code in sorted(summary, key=lambda c: (c is not None, c or "")):
        row = summary[code]
        fa = 100 * row["false_alarm_runs"] / max(1, healthy_runs) if code is None else row["false_alarm_runs"]
        label = "(healthy)" if code is None else code
        fa_text = f"{fa:.1f}" if code is None else f"{fa} early"
        print(
            f"{label:<22}{row['runs']:>6}{_fmt(row['recall'], '.0%'):>8}{fa_text:>9}"
            f"{_fmt(row['median_delay_sudden'], '.1f'):>12}{_fmt(row['median_delay_rows'], '.1f'):>8}"
            f"{_fmt(row['median_delay_slow'], '.3f'):>12}"
        )
    for code in sorted(summary, key=lambda c: (c is not None, c or "")):
        row = summary[code]
        if row["misses"]:
            print(f"misses {code}: {' '.join(row['misses'])}")
        if row["false"]:
            print(f"false alarms {'healthy' if code is None else code}: {' '.join(row['false'])}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="how many seeds (default: the whole dev block, or with --report the whole report block)",
    )
    parser.add_argument("--first-seed", type=int, default=DEV_SEEDS.start)
    parser.add_argument("--report", action="store_true", help="the fixed report block, seeds 1000-1199")
    parser.add_argument("--names", default="", help="comma-separated shape names (default: all)")
    parser.add_argument("--json", default="", help="also write every run's score to this file")
    args = parser.parse_args(argv)
    names = [n for n in args.names.split(",") if n] or list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown shape {unknown[0]!r}; the shapes are: {', '.join(NAMES)}")
    if args.report:  # the block's first --seeds seeds: a partial report is still never tuned on
        seeds = (
            REPORT_SEEDS
            if args.seeds is None
            else range(REPORT_SEEDS.start, REPORT_SEEDS.start + min(args.seeds, len(REPORT_SEEDS)))
        )
    else:
        seeds = range(args.first_seed, args.first_seed + (len(DEV_SEEDS) if args.seeds is None else args.seeds))
    if not args.report and set(seeds) & set(REPORT_SEEDS):
        parser.error("seeds 1000-1199 are the report block: run them only with --report, and tune nothing on them")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="doctor-wild-") as runs_dir:
        results = run_suite(runs_dir, seeds, names)
    healthy_runs = sum(r["code"] is None for r in results)
    print(
        f"{len(results)} runs ({healthy_runs} healthy), seeds {seeds.start}-{seeds.stop - 1}, {time.perf_counter() - started:.0f} s"
    )
    print_table(by_code(results), healthy_runs)
    if args.json:
        Path(args.json).write_text(json.dumps([_plain(r) for r in results], indent=1), encoding="utf-8")
    return 0


def _plain(result: dict) -> dict:
    """A score with its alerts cut to what a table needs (code, severity, step)."""
    brief = [{k: a.get(k) for k in ("code", "severity", "step")} for a in result["false_alarms"]]
    hit = result["hit"] and {k: result["hit"].get(k) for k in ("code", "severity", "step")}
    return {**result, "false_alarms": brief, "hit": hit}


if __name__ == "__main__":
    sys.exit(main())
