"""The task interface: what the engine needs from anything it trains.

A task is one module in trainer/training/tasks/ with one class deriving from Task, registered in
trainer/training/tasks/__init__.py under its config name (`task: char_lm`). Adding a task touches that
module, the registry line and its preset in configs/.

The engine owns the loop, optimiser, schedule, AMP, checkpoints, logging and DDP. A task owns
its data, its model, its loss and what it samples. Randomness: batches are drawn with the
torch.Generator the engine passes (its state is checkpointed, so resume is exact); the model's
own randomness (dropout, diffusion noise) uses torch's global RNG, which is checkpointed too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainer.config import Config


@dataclass
class LossOutput:
    """What one forward pass returns.

    loss: the scalar that is back-propagated (already averaged over the batch).
    parts: named components of the loss, logged as loss/<name> (e.g. diffusion, rounding).
    probes: detached tensors logged as series (e.g. "out/pred_std", "out/target_std");
        the engine averages them over the log interval on the device and adds
        out/variance_ratio when both stds are present.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    probes: dict[str, torch.Tensor] = field(default_factory=dict)


class Task:
    """Base class. Subclasses set `name` and `Options` and implement the methods below."""

    name: str = ""
    # A dataclass of the task's own knobs, filled from config `options:`; unknown keys refused.
    Options: type | None = None
    # What throughput counts (rundir.run_format.THROUGHPUT): tokens for sequence tasks, samples for others.
    unit: str = "tokens"
    # init_from: by default the engine loads the checkpoint's weights into build_model()'s model; a
    # task that uses init_from its own way (text_diffusion: embeddings only) sets this.
    handles_init_from: bool = False

    def __init__(self, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1):
        """Load or generate the data and validate data-dependent config (raise ConfigError).

        Must not write anything: config errors are raised before a run directory exists.
        rank/world_size: each DDP rank draws from its own shard of the training data.
        """
        self.cfg = cfg
        self.device = device
        self.rank = rank
        self.world_size = world_size

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def get_batch(self, split: str, generator: torch.Generator) -> Any:
        """A batch for split 'train' or 'val', on self.device, drawn using generator only."""
        raise NotImplementedError

    def compute_loss(self, model: nn.Module, batch: Any, step: int) -> LossOutput:
        raise NotImplementedError

    def units_per_batch(self) -> int:
        """How many tokens (or samples) one micro-batch holds, for speed/tokens_per_s."""
        return self.cfg.batch_size * self.cfg.block_size

    @torch.no_grad()
    def sample(self, model: nn.Module, step: int, generator: torch.Generator) -> dict:
        """Keyword arguments for RunWriter.log_sample: {"text": ...} or {"pred": [...], "target": [...]}."""
        raise NotImplementedError

    def difficulty(self, step: int) -> float | None:
        """Current curriculum difficulty in (0, 1], or None when the task has no curriculum."""
        return None
