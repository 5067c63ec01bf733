"""A small bidirectional transformer conditioned on a noise level: the denoiser shared by the
diffusion tasks (text_diffusion predicts clean embeddings, discrete_diffusion clean tokens).

    net = Denoiser(d_in=16, d_out=16, block_size=64, n_layer=2, n_head=4, n_embd=64, dropout=0.1)
    out = net(x, noise_level)        # x (B, T, d_in), noise_level (B,) in [0, 1] -> (B, T, d_out)

The body is the GPT's (trainer/training/models/gpt.py) with causal=False.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainer.training.models.gpt import GPTConfig, Transformer


def noise_level_embedding(level: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of a noise level in [0, 1] (scaled to 0..1000 as DDPM's timesteps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=level.device) / half)
    angles = 1000.0 * level.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Denoiser(nn.Module):
    def __init__(
        self, d_in: int, d_out: int, block_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float, bias=False
    ):
        super().__init__()
        cfg = GPTConfig(
            block_size=block_size,
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            dropout=dropout,
            bias=bias,
            causal=False,
        )
        self.n_embd = n_embd
        self.in_proj = nn.Linear(d_in, n_embd)
        self.pos = nn.Parameter(torch.randn(block_size, n_embd) * 0.02)
        self.level_mlp = nn.Sequential(nn.Linear(n_embd, n_embd), nn.GELU(), nn.Linear(n_embd, n_embd))
        self.drop = nn.Dropout(dropout)
        self.body = Transformer(cfg)
        self.out_proj = nn.Linear(n_embd, d_out)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        level = self.level_mlp(noise_level_embedding(noise_level, self.n_embd))
        h = self.in_proj(x) + self.pos[:T] + level[:, None, :]
        return self.out_proj(self.body(self.drop(h)))
