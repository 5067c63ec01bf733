"""Healthy runs as other programs write them. None of these should raise a warning.

Each shape fixes the one thing it is about and draws the rest (program, task, lengths, noise,
which keys are logged, config) from the seed.
"""

from __future__ import annotations

import numpy as np

from trainer.doctor.wildsuite.draft import Draft, draw, loguniform


def hf_linear(rng) -> Draft:
    """transformers.Trainer's default: linear warm-up, linear decay to exactly 0.0 at the end."""
    return draw(rng, program="hf_trainer", schedule="linear", config_kind="full")


def cosine_to_zero(rng) -> Draft:
    """HF `cosine` or timm's per-epoch cosine staircase, down to 0 or lr_min."""
    return draw(rng, program=str(rng.choice(["hf_trainer", "timm"])), schedule="cosine")


def step_decay(rng) -> Draft:
    """MultiStepLR: x0.1 (or 0.2, 0.5) at milestones; the loss drops at each, as in ResNet runs."""
    d = draw(rng, program=str(rng.choice(["timm", "lightning", "script"])), schedule="step")
    drops = np.flatnonzero(np.diff(d.lr) < 0) + 1
    for i in drops:  # loss falls 10-30% of its excess over a few % of the run after each decay
        width = d.max_steps * rng.uniform(0.005, 0.03)
        share = rng.uniform(0.1, 0.3) / (1 + np.exp(-(d.steps - d.steps[i]) / width))
        d.loss = d.loss * (1 - share * (1 - 0.6 * d.loss.min() / d.loss))
    return d


def one_cycle(rng) -> Draft:
    return draw(rng, schedule="one_cycle", program=str(rng.choice(["lightning", "script"])))


def constant_lr(rng) -> Draft:
    return draw(rng, schedule=str(rng.choice(["constant", "constant_with_warmup"])))


def inverse_sqrt(rng) -> Draft:
    return draw(rng, schedule="inverse_sqrt", program=str(rng.choice(["hf_trainer", "script"])))


def finetune_low(rng) -> Draft:
    """A fine-tune: starts at a low loss (2.5-4 for text) and moves 5-15% in the whole run."""
    return draw(
        rng,
        finetune=True,
        program=str(rng.choice(["hf_trainer", "script"])),
        task=str(rng.choice(["text", "regression"])),
    )


def resume_gap(rng) -> Draft:
    """Stopped and resumed 1-3 times, each after 20 min to 8 h off (the clock jumps; steps go on)."""
    d = draw(rng)
    for frac in sorted(rng.uniform(0.15, 0.9, size=int(rng.integers(1, 4)))):
        step = int(d.steps[d.row(int(frac * d.max_steps))])
        if step < d.max_steps:
            d.resumes.append((step, float(rng.choice([3600.0, loguniform(rng, 1200, 28800)]))))
            i = d.row(step + 1)
            d.speed[i] *= rng.uniform(0.4, 0.9)  # cold caches after the restart
            # A new process: memory starts low again and grows back to where it was.
            tau = d.max_steps * rng.uniform(0.01, 0.04)
            d.rss[i:] = d.rss[i:] - (d.rss[i:] - d.rss[0]) * np.exp(-(d.steps[i:] - step) / tau)
    return d


def log_every_step(rng) -> Draft:
    return draw(rng, log_interval=1, max_steps=int(rng.integers(300, 3000)))


def log_every_100(rng) -> Draft:
    return draw(rng, log_interval=100, max_steps=100 * int(rng.integers(50, 300)))


def irregular_eval(rng) -> Draft:
    return draw(rng, eval_kind="irregular")


def no_config(rng) -> Draft:
    return draw(rng, config_kind="none")


def partial_config(rng) -> Draft:
    return draw(rng, config_kind="partial")


def noisy(rng) -> Draft:
    """A small batch: 10-25% noise per step on the loss, grad norm log-noise 0.3-0.6, and 0-4
    one-row gradient-norm spikes of 3-6x (a rare hard batch; the loss does not move)."""
    d = draw(rng, noisy=True, log_interval=int(rng.choice([1, 1, 5, 10])))
    for i in rng.choice(len(d.steps), size=int(rng.integers(0, 5)), replace=False):
        d.grad[i] *= rng.uniform(3, 6)
    return d


def shared_machine(rng) -> Draft:
    """Another job shares the machine for a while: steps/s dips to 0.6-0.8x for 1-3% of the run,
    once or twice, and recovers."""
    d = draw(rng, program="script")
    d.log_speed = True
    for _ in range(int(rng.integers(1, 3))):
        start = rng.uniform(0.1, 0.85) * d.max_steps
        dip = (d.steps >= start) & (d.steps < start + rng.uniform(0.01, 0.03) * d.max_steps)
        d.speed = np.where(dip, d.speed * rng.uniform(0.6, 0.8), d.speed)
    return d


def sparse_keys(rng) -> Draft:
    """Logs only some keys: the loss, maybe the LR; no grad norm, speed, memory or probes."""
    return draw(rng, keys="some")


def dropout_gap(rng) -> Draft:
    """Dropout on in training, off in eval: val loss 3-15% below train, healthy."""
    d = draw(rng)
    d.val = np.minimum.accumulate(d.loss_at(d.eval_steps) * rng.uniform(0.85, 0.97))
    return d


def fp16_overflow(rng) -> Draft:
    """fp16 with a GradScaler: a few inf grad norms in the first 10% while the scale settles;
    those steps are skipped and the loss is unharmed."""
    d = draw(rng, program="hf_trainer")
    d.log_grad = True
    n = int(rng.integers(1, 5))
    d.grad_bad_steps = tuple(int(s) for s in rng.choice(d.steps[: max(2, len(d.steps) // 10)], size=n, replace=False))
    if d.config is not None:
        d.config["fp16"] = True
    return d


def curriculum_paced(rng) -> Draft:
    """A curriculum ramped slowly (linear over 20-40% of the run, report 002's fix): the loss
    rises gently with the difficulty, then falls once the ramp is done."""
    d = draw(rng, task="text", program="script", config_kind="full")
    ramp = int(d.max_steps * rng.uniform(0.2, 0.4))
    start = rng.uniform(0.1, 0.3)
    difficulty = np.minimum(1.0, start + (1 - start) * d.steps / ramp)
    d.extra["curriculum/difficulty"] = difficulty
    d.loss = d.curriculum_loss(difficulty)
    # val is measured at full difficulty, so it falls throughout
    d.val = np.minimum.accumulate(d.curriculum_loss(np.ones(d.steps.shape)) * 1.03)[[d.row(s) for s in d.eval_steps]]
    d.config = {
        "lr": d.lr_peak,
        "max_steps": d.max_steps,
        "curriculum": {"ramp": "linear", "preschool_steps": ramp, "start": round(start, 3)},
    }
    return d


def regression_outputs(rng) -> Draft:
    """A forecaster logging prediction and target spread: the ratio starts low and rises to ~1."""
    return draw(rng, task="regression", keys="all")


SHAPES = {
    "hf_linear": hf_linear,
    "cosine_to_zero": cosine_to_zero,
    "step_decay": step_decay,
    "one_cycle": one_cycle,
    "constant_lr": constant_lr,
    "inverse_sqrt": inverse_sqrt,
    "finetune_low": finetune_low,
    "resume_gap": resume_gap,
    "log_every_step": log_every_step,
    "log_every_100": log_every_100,
    "irregular_eval": irregular_eval,
    "no_config": no_config,
    "partial_config": partial_config,
    "noisy": noisy,
    "shared_machine": shared_machine,
    "sparse_keys": sparse_keys,
    "dropout_gap": dropout_gap,
    "fp16_overflow": fp16_overflow,
    "curriculum_paced": curriculum_paced,
    "regression_outputs": regression_outputs,
}
