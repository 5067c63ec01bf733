"""Helpers shared by the task modules: their `options:` parsing (the curriculum formula is trainer.config.curriculum).

A task's knobs live in config `options:` and are checked by its Options dataclass with the same
rules as the main schema (trainer/config/__init__.py): unknown keys are refused and every value is
coerced and checked, so a typo fails before a run directory exists.
"""

from __future__ import annotations

from trainer.config import _build, knob
from trainer.config.curriculum import curriculum_difficulty
from trainer.errors import ConfigError

__all__ = ["knob", "parse_options", "curriculum_difficulty", "linear_decay"]


def parse_options(task_name: str, options_cls: type, raw: dict | None):
    """options_cls filled from raw (config `options:`); ConfigError naming key, value and what is allowed."""
    try:
        return _build(options_cls, dict(raw or {}), "options.")
    except ConfigError as e:
        raise ConfigError(f"task {task_name}: {e}") from None


def linear_decay(step: int, total_steps: int, start: float, end: float) -> float:
    """start at step 0, end at total_steps and after, linear in between."""
    progress = min(1.0, max(0, step) / max(1, total_steps))
    return start + (end - start) * progress
