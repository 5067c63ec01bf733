"""Trainer overhead: tokens/s of the default config through the trainer (run directory, metrics
every 10 steps, grads.jsonl every 50, online doctor, stop-file polling) against a minimal plain
PyTorch loop of the same model, data, optimizer and schedule, in the same process, interleaved.

    python benchmarks/overhead.py [--steps 300] [--repeats 3]

Both sides are timed from step 10 to the last step (warm-up left out), in wall time and in process
CPU time; the trainer is clocked at its own train/loss rows, so its final eval and checkpoint are
not counted (the plain loop has none). Target: overhead <= 3%. On a shared machine the figures are noisy; compare medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainer.config import resolve
from trainer.config.schedule import lr_at
from trainer.rundir.writer import RunWriter
from trainer.training.engine import build_task, train

PRESET = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_char.yaml"
WARMUP = 10


def config(steps: int):
    sets = [f"max_steps={steps}", f"eval_interval={steps}", f"sample_interval={steps}", f"checkpoint_interval={steps}"]
    return resolve(PRESET, sets, environ={})


class RowClock:
    """Wall and process CPU time at each train/loss row the trainer logs (CPU time is the steadier
    figure on a machine shared with other jobs)."""

    def __init__(self):
        self.at: dict[int, tuple[float, float]] = {}
        self._log = RunWriter.log

    def __enter__(self):
        clock = self

        def log(writer, step, scalars, time_=None):
            if "train/loss" in scalars:
                clock.at[step] = (time.perf_counter(), time.process_time())
            return clock._log(writer, step, scalars, time_)

        RunWriter.log = log
        return self

    def __exit__(self, *exc):
        RunWriter.log = self._log


def trainer_speed(steps: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) through the trainer."""
    cfg = config(steps)
    with tempfile.TemporaryDirectory() as runs, RowClock() as clock:
        assert train(cfg, runs, "overhead") == "finished"
    tokens = (steps - WARMUP) * cfg.batch_size * cfg.block_size
    (w0, c0), (w1, c1) = clock.at[WARMUP], clock.at[steps]
    return tokens / (w1 - w0), tokens / (c1 - c0)


def plain_speed(steps: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) of a minimal loop, same model and data."""
    cfg = config(steps)
    task = build_task(cfg, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    for step in range(steps):
        if step == WARMUP:
            w0, c0 = time.perf_counter(), time.process_time()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = task.compute_loss(model, task.get_batch("train", gen), step).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    tokens = (steps - WARMUP) * cfg.batch_size * cfg.block_size
    return tokens / (time.perf_counter() - w0), tokens / (time.process_time() - c0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plain, trainer = [], []
    for i in range(args.repeats):
        plain.append(plain_speed(args.steps))
        trainer.append(trainer_speed(args.steps))
        print(
            f"repeat {i + 1}: plain {plain[-1][0]:,.0f} tok/s ({plain[-1][1]:,.0f} per CPU s)  "
            f"trainer {trainer[-1][0]:,.0f} tok/s ({trainer[-1][1]:,.0f} per CPU s)",
            flush=True,
        )
    for k, what in ((0, "wall"), (1, "CPU")):
        p = statistics.median(x[k] for x in plain)
        t = statistics.median(x[k] for x in trainer)
        print(
            f"{what:>4}: plain {p:,.0f}  trainer {t:,.0f} tokens/s  overhead {100 * (p - t) / p:+.1f}% (target <= 3%)"
        )
    print(f"({args.steps} steps x {args.repeats} interleaved repeats, medians)")


if __name__ == "__main__":
    main()
