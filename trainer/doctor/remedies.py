"""Ranked remedies for each alert code, from the incident reports' own reasoning.

Every remedy is {"set": {dotted config key: value}, "why": "..."} and is a valid input to
`python -m trainer fork RUN --set key=value ...` for the run's config (or the defaults when the
run has none): tests apply each set with trainer.config.apply_overrides and validate it with
trainer.config.from_dict. Keys that change parameter shapes (block_size, model.*) are never set,
because a fork loads the checkpoint's weights; when a report's fix is a smaller block the "why"
says so and names the new-run command instead.
"""

from __future__ import annotations

from trainer.config import Config


def _base(ctx) -> Config:
    return ctx.cfg if ctx.cfg is not None else Config()


def _num(value: float) -> float:
    """Round to 3 significant digits so remedies read like a human wrote them (0.003, not 0.0030000001)."""
    return float(f"{value:.3g}")


def _lr_set(cfg: Config, factor: float, warmup_divisor: int = 1) -> dict:
    """lr times factor, keeping min_lr <= lr and warmup_steps < max_steps valid."""
    lr = _num(cfg.lr * factor)
    out = {"lr": lr}
    if cfg.min_lr > lr:
        out["min_lr"] = _num(lr / 10)
    if warmup_divisor > 1 and cfg.warmup_steps > 0:
        out["warmup_steps"] = max(1, cfg.warmup_steps // warmup_divisor)
    return out


def raise_lr(ctx, why: str) -> dict:
    cfg = _base(ctx)
    return {"set": _lr_set(cfg, 3.0, warmup_divisor=3), "why": why}


def lower_lr(ctx, why: str) -> dict:
    return {"set": _lr_set(_base(ctx), 0.5), "why": why}


# AdamW's decoupled weight decay removes lr x weight_decay of every weight per step. Common
# practice is about 1e-4 (nanoGPT: 1e-3 x 0.1); ten times that halves an unused weight in ~700 steps.
HEAVY_DECAY_PER_STEP = 1e-3


def decay_per_step(ctx) -> float:
    cfg = _base(ctx)
    return cfg.lr * cfg.weight_decay


def lr_or_decay_first(ctx, raise_lr_remedy: dict, less_regularisation_remedy: dict) -> list[dict]:
    """Report 001's order, a larger LR then less regularisation, unless the decay is heavy: a 3x
    LR would then triple the decay too, so less decay comes first and the LR is left alone."""
    if decay_per_step(ctx) <= HEAVY_DECAY_PER_STEP:
        return [raise_lr_remedy, less_regularisation_remedy]
    cfg = _base(ctx)
    share = f"{decay_per_step(ctx) * 100:.3g}%"
    less = dict(less_regularisation_remedy)
    less["why"] = (
        f"lr {cfg.lr:g} x weight_decay {cfg.weight_decay:g} removes {share} of every weight per step "
        f"(common practice: about 0.01%); " + less["why"] + ". Weights decayed that far may be past saving: if a "
        "fork stays collapsed, start a new run with these settings (python -m trainer run --config RUN/config.yaml --set ...)"
    )
    return [less]


def less_regularisation(ctx, why: str) -> dict:
    cfg = _base(ctx)
    wd = _num(cfg.weight_decay / 10) if cfg.weight_decay > 0 else 0.0
    if cfg.lr * wd > HEAVY_DECAY_PER_STEP:
        wd = _num(min(wd, 0.1))  # a tenth of a heavy decay can still be heavy: back to the usual 0.1
    out = {"weight_decay": wd}
    out["grad_clip"] = _num(cfg.grad_clip * 5) if cfg.grad_clip > 0 else 5.0
    if cfg.dropout > 0:
        out["dropout"] = 0.0
    return {"set": out, "why": why}


def tighter_clipping(ctx, why: str) -> dict:
    cfg = _base(ctx)
    clip = _num(cfg.grad_clip * 0.5) if cfg.grad_clip > 0 else 1.0
    return {"set": {"grad_clip": clip}, "why": why}


def larger_batch(ctx, why: str) -> dict:
    cfg = _base(ctx)
    return {"set": {"batch_size": cfg.batch_size * 4}, "why": why}


def smaller_micro_batch(ctx, why: str) -> dict:
    cfg = _base(ctx)
    if cfg.batch_size >= 2:
        half = cfg.batch_size // 2
        return {"set": {"batch_size": half, "grad_accum_steps": cfg.grad_accum_steps * 2}, "why": why}
    return {"set": {"eval_steps": max(1, cfg.eval_steps // 2)}, "why": why}


def slower_curriculum(ctx, why: str) -> dict:
    cfg = _base(ctx)
    preschool = max(1, cfg.curriculum.preschool_steps) * 4
    out = {"curriculum.ramp": "linear", "curriculum.preschool_steps": preschool}
    if preschool >= cfg.max_steps:
        out["max_steps"] = preschool + max(cfg.max_steps, preschool // 4)
    return {"set": out, "why": why}


def early_stopping(ctx, why: str, patience: int = 3) -> dict:
    return {"set": {"early_stopping.patience": patience}, "why": why}


def more_regularisation(ctx, why: str) -> dict:
    cfg = _base(ctx)
    out = {"dropout": 0.2 if cfg.dropout < 0.2 else min(0.5, _num(cfg.dropout + 0.1))}
    out["weight_decay"] = _num(max(cfg.weight_decay * 2, 0.1))
    return {"set": out, "why": why}


def decay_rounding_weight(ctx, why: str) -> dict | None:
    """Only for tasks that have a rounding loss (text_diffusion's options.rounding_weight_final)."""
    cfg = _base(ctx)
    if cfg.task != "text_diffusion":
        return None
    current = (cfg.options or {}).get("rounding_weight_final", 0.05)
    return {"set": {"options.rounding_weight_final": _num(min(0.05, float(current) / 2))}, "why": why}


def constant_lr(ctx, why: str) -> dict:
    return {"set": {"schedule": "constant"}, "why": why}


def declared_lr(ctx, why: str) -> dict:
    cfg = _base(ctx)
    lr = cfg.lr if cfg.lr > 0 else 1e-3
    out = {"lr": lr}
    if cfg.min_lr > lr:
        out["min_lr"] = _num(lr / 10)
    return {"set": out, "why": why}


def ranked(*items) -> list[dict]:
    """Drop the remedies that do not apply (None) and keep the order given."""
    return [item for item in items if item]
