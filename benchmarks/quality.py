"""Quality: the default config (configs/shakespeare_char.yaml) trained to step 2000 on CPU, for
2 seeds; val/loss at step 2000 is the trainer's final eval over eval_steps=200 batches.

    python benchmarks/quality.py [--seeds 1337 1338] [--runs-dir /tmp/quality-runs]

Target: mean val/loss <= 1.88 (nanoGPT's published figure for this model). Takes several minutes
per seed on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import resolve  # noqa: E402
from trainer.engine import train  # noqa: E402

PRESET = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_char.yaml"


def final_val_loss(runs_dir: Path, seed: int) -> tuple[float, int, float]:
    cfg = resolve(PRESET, [f"seed={seed}"], environ={})
    assert cfg.eval_steps >= 100, "estimate val/loss on at least 100 batches"
    run_id = f"quality-seed{seed}-{int(time.time())}"
    start = time.time()
    assert train(cfg, runs_dir, run_id) == "finished"
    rows = [json.loads(x) for x in (runs_dir / run_id / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/loss" in r and r["step"] == cfg.max_steps]
    return val[-1]["val/loss"], cfg.eval_steps, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--runs-dir", type=Path, default=None)
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="quality-runs-"))
    losses = []
    for seed in args.seeds:
        loss, batches, seconds = final_val_loss(runs_dir, seed)
        losses.append(loss)
        print(f"seed {seed}: val/loss {loss:.4f} at step 2000 ({batches} batches; {seconds:.0f} s)", flush=True)
    mean = statistics.mean(losses)
    print(
        f"mean val/loss over {len(losses)} seeds: {mean:.4f} (target <= 1.88) -> {'PASS' if mean <= 1.88 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
