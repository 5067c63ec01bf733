"""The task registry: config name -> task class.

Task modules are imported only when asked for, so a task whose module is missing or broken
cannot stop the others from training. Adding a task: one module with a Task subclass, one line
in TASK_MODULES, its preset in configs/.
"""

from __future__ import annotations

import importlib

from trainer.errors import ConfigError
from trainer.training.tasks.base import LossOutput, Task

# name -> "module:Class" (imported lazily)
TASK_MODULES = {
    "char_lm": "trainer.training.tasks.char_lm:CharLM",
    "text_diffusion": "trainer.training.tasks.text_diffusion:TextDiffusion",
    "regression": "trainer.training.tasks.regression:Regression",
    "discrete_diffusion": "trainer.training.tasks.discrete_diffusion:DiscreteDiffusion",
}


def get_task_class(name: str) -> type[Task]:
    """The Task subclass registered under name; ConfigError if unknown or not importable."""
    if name not in TASK_MODULES:
        raise ConfigError(f"task: {name!r} must be one of " + ", ".join(TASK_MODULES))
    module_name, _, class_name = TASK_MODULES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise ConfigError(f"task {name!r} is not available in this install ({module_name} is missing)") from None
    return getattr(module, class_name)


__all__ = ["TASK_MODULES", "LossOutput", "Task", "get_task_class"]
