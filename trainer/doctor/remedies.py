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


def less_regularisation(ctx, why: str) -> dict:
    cfg = _base(ctx)
    out = {"weight_decay": _num(cfg.weight_decay / 10) if cfg.weight_decay > 0 else 0.0}
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
