"""What the remedies' evidence costs a run (issue 14): the mechanism fields a probe adds to
grads.jsonl (every weight's norm, the embedding and decayed-weight joint norms, lr and decay) against
one training step of the default char GPT, on the same thread, alternated.

    python benchmarks/probe_cost.py [--repeats 200] [--threads 1]

A probe runs every probe_interval steps (50 in configs/shakespeare_char.yaml), so the cost per step
is the probe's extra time / probe_interval; the target is well under 1% of a step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainer import config as C
from trainer.training.engine import _optimizer, build_task
from trainer.training.probes import Mechanism, weight_norm_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = C.resolve("configs/shakespeare_char.yaml", ["device=cpu"])
    task = build_task(cfg)
    model = task.build_model()
    optimizer = _optimizer(model, cfg, torch.device("cpu"))
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
    named = list(model.named_parameters())
    mechanism = Mechanism(named, model, optimizer)
    gen = torch.Generator().manual_seed(0)
    step_s, probe_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = task.compute_loss(model, task.get_batch("train", gen), 0)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        mechanism.fields(weight_norm_tensor(named).tolist(), optimizer)
        probe_s.append(time.perf_counter() - start)
    step, probe = statistics.median(step_s), statistics.median(probe_s)
    per_step = probe / cfg.probe_interval
    print(f"threads {torch.get_num_threads()}, {len(named)} parameter tensors, {args.repeats} alternations (medians)")
    print(f"training step {step * 1e3:.2f} ms; mechanism fields at a probe {probe * 1e3:.3f} ms ({probe / step:.2%})")
    print(f"per step at probe_interval {cfg.probe_interval}: {per_step * 1e6:.1f} us = {per_step / step:.3%} of a step")


if __name__ == "__main__":
    main()
