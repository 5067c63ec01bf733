"""A library's configuration as plain data for config.yaml: numbers, strings, lists and dicts.

TrainingArguments.to_dict() and a model's config hold enums, dtypes and paths; trainer.init writes
config.yaml with yaml.safe_dump, which refuses those, so anything that is not plain becomes its str().
"""

from __future__ import annotations

import enum
import math

PLAIN_SCALARS = (bool, int, float, str, type(None))


def plain(value):
    """value with every dict, list and tuple walked and every other object made a number or a string."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # yaml would write .nan / .inf, which other readers may not expect
    for kind in PLAIN_SCALARS[:-1]:  # their subclasses too, as the plain type
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    return str(value)
