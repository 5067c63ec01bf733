"""Every shape by name, and `make(name, seed)`: the same name and seed always give the same run."""

from __future__ import annotations

import zlib

import numpy as np

from trainer.doctor.wildsuite import failures, failures_optim, failures_system, healthy
from trainer.doctor.wildsuite.assemble import assemble
from trainer.doctor.wildsuite.run import WildRun

FAILING = {
    "nan_loss": failures.nan_loss,
    "inf_grad": failures.inf_grad,
    "loss_spike": failures.loss_spike,
    "loss_rising": failures.loss_rising,
    "curriculum_too_fast": failures.curriculum_too_fast,
    "plateau_lr_too_low": failures.plateau_lr_too_low,
    "plateau_regression": failures.plateau_regression,
    "variance_collapse": failures.variance_collapse,
    "variance_collapse_slow": failures.variance_collapse_slow,
    "token_collapse": failures.token_collapse,
    "token_collapse_slow": failures.token_collapse_slow,
    "val_below_train": failures.val_below_train,
    "val_below_train_slow": failures.val_below_train_slow,
    "overfitting": failures.overfitting,
    "overfitting_creep": failures.overfitting_creep,
    "explode": failures_optim.explode,
    "explode_slow": failures_optim.explode_slow,
    "vanish": failures_optim.vanish,
    "vanish_slow": failures_optim.vanish_slow,
    "dead_parameters": failures_optim.dead_parameters,
    "dead_from_start": failures_optim.dead_from_start,
    "lr_resumed_high": failures_optim.lr_resumed_high,
    "lr_jump": failures_optim.lr_jump,
    "lr_zero": failures_optim.lr_zero,
    "lr_zero_early": failures_optim.lr_zero_early,
    "lr_off_by_factor": failures_optim.lr_off_by_factor,
    "slowdown": failures_system.slowdown,
    "slowdown_slow": failures_system.slowdown_slow,
    "memory_leak": failures_system.memory_leak,
    "cuda_leak": failures_system.cuda_leak,
}
HEALTHY = dict(healthy.SHAPES)
SHAPES = {**HEALTHY, **FAILING}
NAMES = tuple(SHAPES)


def make(name: str, seed: int) -> WildRun:
    """The run of shape `name` drawn from `seed`."""
    shape = SHAPES.get(name)
    if shape is None:
        raise KeyError(f"no wild shape {name!r}; the shapes are: {', '.join(NAMES)}")
    # One stream per (shape, seed): adding a shape never changes another's runs.
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    return assemble(shape(rng), name, int(seed))
