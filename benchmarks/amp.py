"""CUDA mixed precision: the default char GPT (configs/shakespeare_char.yaml) with amp=bf16 against
fp32 (amp=off) on the same GPU, tokens/s through the trainer. Needs CUDA; elsewhere it says so and
exits 2 (bf16 autocast is CUDA-only in this trainer).

    python benchmarks/amp.py [--steps 500] [--batch-size 64] [--block-size 256]

The default model is tiny for a GPU, so the larger --batch-size/--block-size give the GPU work to
do; both runs use the same settings. Throughput is the median of the logged speed/tokens_per_s rows
after the first 5 (warm-up, eval and sampling excluded by the engine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from trainer.config import resolve
from trainer.rundir.reader import read_metrics
from trainer.training.engine import train

ROOT = Path(__file__).resolve().parents[1]

PRESET = ROOT / "configs" / "shakespeare_char.yaml"


def tokens_per_s(amp: str, args, runs_dir: Path) -> tuple[float, float]:
    sets = [
        f"amp={amp}",
        "device=cuda",
        f"max_steps={args.steps}",
        f"batch_size={args.batch_size}",
        f"block_size={args.block_size}",
        f"eval_interval={args.steps}",
        f"sample_interval={args.steps}",
        f"checkpoint_interval={args.steps}",
        "log_interval=10",
    ]
    run_id = f"amp-{amp}"
    assert train(resolve(PRESET, sets, environ={}), runs_dir, run_id) == "finished"
    frame = read_metrics(runs_dir / run_id / "metrics.jsonl")
    speed = frame["speed/tokens_per_s"].dropna().iloc[5:]
    val = frame["val/loss"].dropna()
    return statistics.median(speed), float(val.iloc[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: this figure needs one (bf16 autocast is CUDA-only in this trainer)")
        sys.exit(2)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, fp32_val = tokens_per_s("off", args, Path(tmp))
        bf16, bf16_val = tokens_per_s("bf16", args, Path(tmp))
    print(f"fp32: {fp32:,.0f} tokens/s (val/loss {fp32_val:.3f})")
    print(f"bf16: {bf16:,.0f} tokens/s (val/loss {bf16_val:.3f})")
    print(f"bf16 / fp32: {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
