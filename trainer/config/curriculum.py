"""The curriculum the config names (`curriculum:`): difficulty after a number of steps.

Here, beside the schema, because both the tasks (which apply it) and the doctor (which checks a
run's logged difficulty against it) need the same formula.
"""

from __future__ import annotations

import math

from trainer.config import CurriculumConfig


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
