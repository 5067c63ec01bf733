"""Quality: the default config (configs/shakespeare_char.yaml) trained to step 2000 on CPU, for
2 seeds. Two figures per seed: val/loss at step 2000 as the trainer logs it (its final eval over
eval_steps=200 random batches), and the loss of the step-2000 weights on the whole val split (no
sampling noise). Beside each seed, the same recipe through an independent nanoGPT loop
(benchmarks/nanogpt_reference.py) on the whole val split, to tell the trainer from the recipe.

    python benchmarks/quality.py [--seeds 1337 1338] [--runs-dir /tmp/quality-runs] [--no-reference]

Target: mean val/loss <= 1.88 (nanoGPT's published figure for this model). About 3 minutes per
seed on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from nanogpt_reference import Recipe, split_loss, train_reference

from trainer.config import resolve
from trainer.training.checkpoint import init_weights
from trainer.training.engine import build_task, train

PRESET = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_char.yaml"


def trainer_losses(runs_dir: Path, seed: int) -> tuple[float, float, float]:
    """(logged val/loss at max_steps, whole-split loss of the final weights, seconds)."""
    cfg = resolve(PRESET, [f"seed={seed}"], environ={})
    assert cfg.eval_steps >= 100, "estimate val/loss on at least 100 batches"
    run_id = f"quality-seed{seed}-{int(time.time())}"
    start = time.time()
    assert train(cfg, runs_dir, run_id) == "finished"
    seconds = time.time() - start
    rows = [json.loads(x) for x in (runs_dir / run_id / "metrics.jsonl").read_text().splitlines()]
    logged = [r["val/loss"] for r in rows if "val/loss" in r and r["step"] == cfg.max_steps][-1]
    task = build_task(cfg, torch.device("cpu"))
    model = task.build_model()
    assert init_weights(model, runs_dir / run_id / "checkpoints" / "last.pt") == cfg.max_steps
    return logged, split_loss(model, task.val_data, cfg.block_size), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--no-reference", action="store_true", help="skip the nanoGPT reference runs")
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="quality-runs-"))
    logged, split, reference = [], [], []
    for seed in args.seeds:
        a, b, seconds = trainer_losses(runs_dir, seed)
        logged.append(a)
        split.append(b)
        line = f"seed {seed}: trainer val/loss {a:.4f} logged (200 batches), {b:.4f} whole split ({seconds:.0f} s)"
        if not args.no_reference:
            start = time.time()
            model, val_ids = train_reference(seed)
            reference.append(split_loss(model, val_ids, Recipe.block_size))
            line += f"; nanoGPT reference {reference[-1]:.4f} whole split ({time.time() - start:.0f} s)"
        print(line, flush=True)
    mean = statistics.mean(logged)
    print(f"mean over {len(logged)} seeds, trainer: logged {mean:.4f}, whole split {statistics.mean(split):.4f}")
    if reference:
        print(f"mean over {len(reference)} seeds, nanoGPT reference: whole split {statistics.mean(reference):.4f}")
    print(f"target: logged mean <= 1.88 -> {'PASS' if mean <= 1.88 else 'FAIL'}")


if __name__ == "__main__":
    main()
