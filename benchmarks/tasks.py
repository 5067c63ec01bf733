"""Per-task figures on CPU: steps/s, tokens/s (samples/s for regression) and final val/loss of
each healthy preset, trained through engine.train for a fixed number of steps.

    python benchmarks/tasks.py                 # 300 steps per task, ~2-3 minutes on 2 cores
    python benchmarks/tasks.py --steps 100 --tasks regression discrete_diffusion

Speeds are the medians of the logged speed/* rows (eval and sampling time excluded by the
engine). The machine may be shared: CPU seconds and the load average are printed beside them.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from trainer.config import resolve
from trainer.training.engine import train
from trainer.training.tasks import get_task_class

ROOT = Path(__file__).resolve().parents[1]

PRESETS = {
    "char_lm": "shakespeare_char",
    "text_diffusion": "text_diffusion",
    "regression": "regression",
    "discrete_diffusion": "discrete_diffusion",
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench(task: str, steps: int, runs_dir: Path) -> dict:
    sets = [f"max_steps={steps}", f"eval_interval={steps}", f"sample_interval={steps}", "device=cpu"]
    sets += [f"warmup_steps={min(50, steps // 10)}", f"checkpoint_interval={steps}"]
    cfg = resolve(ROOT / "configs" / f"{PRESETS[task]}.yaml", sets, environ={})
    wall, cpu = time.perf_counter(), cpu_seconds()
    state = train(cfg, runs_dir, task)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    df = pd.read_json(runs_dir / task / "metrics.jsonl", lines=True)
    speed = df.dropna(subset=["speed/steps_per_s"])
    unit = get_task_class(task).unit
    return {
        "task": task,
        "state": state,
        "steps": steps,
        "steps/s": speed["speed/steps_per_s"].median(),
        "units/s": speed["speed/tokens_per_s"].median(),
        "unit": unit,
        "final val/loss": df.dropna(subset=["val/loss"])["val/loss"].iloc[-1],
        "wall s": wall,
        "cpu s": cpu,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tasks", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(task, args.steps, Path(tmp)) for task in args.tasks]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
