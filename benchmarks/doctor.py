"""Doctor cost figures: diagnose() on a 1,000,000-row run, and the online cost per logged row.

    python benchmarks/doctor.py [--rows 1000000] [--keep DIR]

Targets (issue 4): diagnose of a 1,000,000-row metrics.jsonl in at most 2 s; online cost per log
interval at most 1% of a default char-GPT step (30-60 ms on this CPU, so at most 0.3 ms per row
at log_interval 10).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

from trainer.config import Config
from trainer.doctor import OnlineDoctor, diagnose

ROOT = Path(__file__).resolve().parents[1]


def rows(n: int, seed: int = 0):
    """Writer-shaped rows of a healthy run: a train row every 10 steps, a val row every 25th."""
    rng = random.Random(seed)
    for i in range(1, n + 1):
        step = 10 * i
        loss = 1.5 + 2.7 * math.exp(-i / (n / 8))
        row = {
            "step": step,
            "time": 1.7e9 + step * 0.04,
            "lr": 1e-3,
            "train/loss": loss * (1 + rng.gauss(0, 0.02)),
            "grad/norm": 0.8 * math.exp(rng.gauss(0, 0.2)),
            "speed/steps_per_s": 25 * (1 + rng.gauss(0, 0.05)),
            "speed/tokens_per_s": 19200.0,
            "sys/rss_mb": 950 + rng.gauss(0, 3),
            "sys/cpu_percent": 180.0,
        }
        yield row
        if i % 25 == 0:
            yield {"step": step, "time": row["time"], "val/loss": loss * 1.03}


def write_run(run_dir: Path, n: int) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(run_dir / "metrics.jsonl", "w") as f:
        batch = []
        for row in rows(n):
            batch.append(json.dumps(row, separators=(",", ":")))
            count += 1
            if len(batch) >= 10000:
                f.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            f.write("\n".join(batch) + "\n")
    return count


def online_cost_per_row(n: int = 20000) -> float:
    cfg = Config(max_steps=10 * n).to_dict()
    doctor = OnlineDoctor(cfg)
    records = list(rows(n, seed=1))
    start = time.perf_counter()
    for record in records:
        doctor.observe("metrics", record)
    return (time.perf_counter() - start) / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="metrics rows (train rows; val rows come extra)")
    parser.add_argument("--keep", type=Path, help="write the run here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.keep or Path(tmp) / "bench-run"
        if not (run_dir / "metrics.jsonl").exists():
            total = write_run(run_dir, int(args.rows / 1.04))
        else:
            total = sum(1 for _ in open(run_dir / "metrics.jsonl"))
        size_mb = (run_dir / "metrics.jsonl").stat().st_size / 1e6
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = diagnose(run_dir)
            times.append(time.perf_counter() - start)
        print(
            f"diagnose: {total} rows ({size_mb:.0f} MB): best {min(times):.2f} s, runs "
            + ", ".join(f"{t:.2f}" for t in times)
            + f" (target <= 2 s); {len(result['alerts'])} alerts, "
            f"sampling every {result['run']['sample_stride']} rows"
        )
    per_row = online_cost_per_row()
    print(
        f"online: {per_row * 1e6:.1f} us per metrics row = {per_row / 0.030 * 100:.3f}% of a 30 ms step "
        f"(log_interval 10: {per_row / (10 * 0.030) * 100:.4f}% of the interval; target <= 1%)"
    )


if __name__ == "__main__":
    main()
