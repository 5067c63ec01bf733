"""The task registry: a task is the module trainer/training/tasks/<name>.py holding a Task subclass
whose `name` is <name>. The config's `task: <name>` picks it; nothing else lists tasks.

Adding a task takes three files: its module here (a Task subclass; see base.py for what to
implement), its preset in configs/, and its test. Task modules are imported only when asked for,
so a task whose module is broken cannot stop the others from training.
"""

from __future__ import annotations

import importlib
import pkgutil

from trainer.errors import ConfigError
from trainer.training.tasks.base import LossOutput, Task


def get_task_class(name: str) -> type[Task]:
    """The Task subclass registered under name; ConfigError if there is none."""
    module = _task_module(name)
    found = (
        [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Task) and value.name == name
        ]
        if module is not None
        else []
    )
    if not found:
        raise ConfigError(f"task: {name!r} must be one of " + ", ".join(task_names()))
    return found[0]


def task_names() -> list[str]:
    """Every task this install has (imports each module in this package: an error path and tests only)."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        module = _task_module(info.name)
        if module is not None and any(
            isinstance(v, type) and issubclass(v, Task) and v.name == info.name for v in vars(module).values()
        ):
            names.append(info.name)
    return names


def _task_module(name: str):
    if not isinstance(name, str) or not name.isidentifier():
        return None
    module_name = f"{__name__}.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise  # the task's module exists but needs something that is missing: say so
        return None


__all__ = ["LossOutput", "Task", "get_task_class", "task_names"]
