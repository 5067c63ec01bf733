"""Learning-rate schedules as pure functions of the step (no scheduler object to checkpoint:
the step is the whole state, so a resumed or forked run with a new lr just follows the new curve).

`step` counts optimizer steps already taken (0 for the first update).
"""

from __future__ import annotations

import math

from trainer.config import Config


def lr_at(step: int, cfg: Config) -> float:
    """The learning rate for the update after `step` completed updates."""
    if cfg.schedule == "constant":
        return cfg.lr
    # 1) linear warm-up from lr/(warmup+1) to lr over warmup_steps (nanoGPT's get_lr)
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    # 2) past max_steps (a resume with a larger budget ends here until max_steps changes): min_lr
    if step >= cfg.max_steps:
        return cfg.min_lr
    # 3) in between, decay to min_lr: cosine or linear
    progress = (step - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps)
    if cfg.schedule == "warmup_cosine":
        coeff = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        coeff = 1.0 - progress
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)
