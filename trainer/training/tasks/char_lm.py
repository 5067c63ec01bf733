"""char_lm: a character-level GPT on a text corpus (tiny Shakespeare by default), as nanoGPT's
shakespeare_char. Preset: configs/shakespeare_char.yaml

    python -m trainer run --config configs/shakespeare_char.yaml

The vocabulary is every character of the corpus; the first (1 - val_split) of the text trains,
the rest validates (split by position, so no validation text is ever trained on).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer import PROJECT_ROOT
from trainer.config import Config
from trainer.errors import ConfigError
from trainer.training.models.gpt import GPT, GPTConfig
from trainer.training.tasks.base import LossOutput, Task


def resolve_data_path(data_path: str) -> Path:
    """data_path as given, else relative to the project root (so runs work from any directory)."""
    path = Path(data_path)
    if path.is_file():
        return path
    if not path.is_absolute() and (PROJECT_ROOT / path).is_file():
        return PROJECT_ROOT / path
    raise ConfigError(f"data_path: {data_path!r} not found; the bundled corpus is data/tinyshakespeare.txt")


class CharLM(Task):
    name = "char_lm"
    unit = "tokens"

    def __init__(self, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1):
        super().__init__(cfg, device, rank, world_size)
        text = resolve_data_path(cfg.data_path).read_text(encoding="utf-8")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        data = torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        n_train = int(len(data) * (1 - cfg.val_split))
        train, self.val_data = data[:n_train], data[n_train:]
        if cfg.block_size >= len(self.val_data):
            raise ConfigError(
                f"block_size {cfg.block_size} exceeds the validation split ({len(self.val_data)} characters); "
                f"use at most {len(self.val_data) - 1}"
            )
        # Each DDP rank trains on its own contiguous shard of the training text.
        shard = len(train) // world_size
        self.train_data = train[rank * shard : (rank + 1) * shard]
        if cfg.block_size >= len(self.train_data):
            raise ConfigError(
                f"block_size {cfg.block_size} exceeds the training shard ({len(self.train_data)} characters "
                f"for {world_size} processes); use at most {len(self.train_data) - 1}"
            )
        self._offsets = torch.arange(cfg.block_size + 1)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return GPT(
            GPTConfig(
                vocab_size=self.vocab_size,
                block_size=self.cfg.block_size,
                n_layer=m.n_layer,
                n_head=m.n_head,
                n_embd=m.n_embd,
                dropout=self.cfg.dropout,
                bias=m.bias,
            )
        )

    def get_batch(self, split: str, generator: torch.Generator):
        data = self.train_data if split == "train" else self.val_data
        starts = torch.randint(len(data) - self.cfg.block_size, (self.cfg.batch_size,), generator=generator)
        chunk = data[starts[:, None] + self._offsets]  # (B, T + 1) in one gather
        x, y = chunk[:, :-1], chunk[:, 1:]
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def compute_loss(self, model: nn.Module, batch, step: int) -> LossOutput:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        return LossOutput(loss=loss)

    @torch.no_grad()
    def sample(self, model: nn.Module, step: int, generator: torch.Generator) -> dict:
        start = torch.tensor([[self.stoi.get("\n", 0)]], dtype=torch.long, device=self.device)
        out = model.generate(start, self.cfg.sample_length, generator)
        return {"text": self.decode(out[0, 1:].tolist())}
