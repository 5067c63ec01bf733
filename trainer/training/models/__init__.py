"""Models shared by the tasks: a nanoGPT-style transformer (gpt.py)."""

from trainer.training.models.gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
