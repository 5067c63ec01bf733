"""How much a healthy run's speed wanders on this machine, by the length of the stretch it is timed
over, and the slowdown alerts the doctor raises on it: what Slowdown.min_hold_s rests on.

    PYTHONPATH=. python benchmarks/speed_jitter.py [--runs 2] [--steps 3000]
    PYTHONPATH=. python benchmarks/speed_jitter.py --script examples/plain_loop.py --steps 20000

Runs the script (default: examples/hf_gpt2.py, a small GPT-2 on the bundled Shakespeare through the
Hugging Face Trainer, logging every 2 steps; needs `pip install -e .[hf]`) `runs` times, one after
the other, with nothing else started. For each window length D, its speed (steps over seconds,
from the train rows' wall-clock times) in windows of D seconds sliding by D/4, and the worst drop
of a window against the best window before it: a drop the slowdown detector would see as a
slowdown if it lasted that long (it fires at 25%). Also prints each run's slowdown alerts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records

ROOT = Path(__file__).resolve().parents[1]
WINDOWS_S = (1, 2, 5, 10, 15, 20, 30)


def worst_drops(times: list[float], steps: list[int], windows=WINDOWS_S) -> dict[int, float | None]:
    """Per window length D: the largest 1 - speed / best speed before it over windows of D seconds
    sliding by D / 4 (None where the run is shorter than two windows)."""
    out = {}
    for d in windows:
        speeds, start, i = [], times[0], 0
        while start + d <= times[-1]:
            while times[i] < start:
                i += 1
            j = i
            while j + 1 < len(times) and times[j + 1] <= start + d:
                j += 1
            if j > i:
                speeds.append((steps[j] - steps[i]) / (times[j] - times[i]))
            start += d / 4
        if len(speeds) < 2:
            out[d] = None
            continue
        best = worst = 0.0
        for v in speeds:
            best = max(best, v)
            worst = max(worst, 1 - v / best)
        out[d] = worst
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--script", default="examples/hf_gpt2.py")
    parser.add_argument("--script-args", default="--logging-steps 2", help="more arguments for the script")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="speed-jitter-") as runs_dir:
        env = {**os.environ, "TRAINER_RUNS_DIR": runs_dir, "PYTHONPATH": str(ROOT)}
        for n in range(args.runs):
            run_id = f"jitter-{n}"
            command = [sys.executable, args.script, "--steps", str(args.steps), "--run-id", run_id]
            started = time.perf_counter()
            subprocess.run([*command, *args.script_args.split()], cwd=ROOT, env=env, check=True, capture_output=True)
            run_dir = Path(runs_dir) / run_id
            train = [r for r in read_records(run_dir / rf.METRICS_FILE) if rf.TRAIN_LOSS in r]
            times, steps = [r[rf.TIME] for r in train], [r["step"] for r in train]
            alerts = [
                e
                for e in read_records(run_dir / rf.EVENTS_FILE)
                if e.get("kind") == "alert" and e.get("code") == "slowdown"
            ]
            print(
                f"run {n}: {len(train)} rows over {times[-1] - times[0]:.0f} s "
                f"({time.perf_counter() - started:.0f} s with start-up), {len(alerts)} slowdown alerts"
            )
            for alert in alerts:
                print(f"  step {alert.get('step')} ({alert.get('severity')}): {alert.get('message', '')[:150]}")
            for d, worst in worst_drops(times, steps).items():
                print(f"  windows of {d:>2} s: worst drop against the best before it {_pct(worst)}")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    sys.exit(main())
