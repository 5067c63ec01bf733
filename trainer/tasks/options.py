"""Helpers shared by the task modules: their `options:` parsing and the curriculum.

A task's knobs live in config `options:` and are checked by its Options dataclass with the same
rules as the main schema (trainer/config.py): unknown keys are refused and every value is
coerced and checked, so a typo fails before a run directory exists.
"""

from __future__ import annotations

import math

from trainer.config import CurriculumConfig, _build, knob
from trainer.errors import ConfigError

__all__ = ["knob", "parse_options", "curriculum_difficulty", "linear_decay"]


def parse_options(task_name: str, options_cls: type, raw: dict | None):
    """options_cls filled from raw (config `options:`); ConfigError naming key, value and what is allowed."""
    try:
        return _build(options_cls, dict(raw or {}), "options.")
    except ConfigError as e:
        raise ConfigError(f"task {task_name}: {e}") from None


def curriculum_difficulty(step: int, curriculum: CurriculumConfig) -> float | None:
    """The difficulty in (0, 1] after `step` updates, or None when curriculum.ramp is none.

    1) linear: from `start` to 1 in equal steps over preschool_steps.
    2) exponential: 1 - (1 - start) * exp(-5 * progress), clamped to 1 at the end of the ramp:
       it rises fast at first (two thirds of the way in the first fifth), the "aggressive"
       ramp of the SEDD incident report (report 002).
    """
    if curriculum.ramp == "none":
        return None
    progress = min(1.0, max(0, step) / max(1, curriculum.preschool_steps))
    if progress >= 1.0:
        return 1.0
    start = curriculum.start
    if curriculum.ramp == "linear":
        return start + (1.0 - start) * progress
    return 1.0 - (1.0 - start) * math.exp(-5.0 * progress)


def linear_decay(step: int, total_steps: int, start: float, end: float) -> float:
    """start at step 0, end at total_steps and after, linear in between."""
    progress = min(1.0, max(0, step) / max(1, total_steps))
    return start + (end - start) * progress
