"""regression: multi-step forecasting of synthetic seasonal series with an encoder-decoder
transformer, the model of incident report 001. Presets: configs/regression.yaml (healthy),
configs/regression_variance_collapse.yaml, configs/regression_val_below_train.yaml,
configs/regression_dead_branch.yaml.

    python -m trainer run --config configs/regression.yaml

Data: options.channels series of options.length points, made from the seed alone: a slow trend,
two seasonal cycles per channel (periods options.period and 7 x options.period), channel mixing
and AR(1) noise; normalised with the training part's mean and std, so targets have a std of
about 0.8-1.0 as in the report. The first (1 - val_split) of time trains, the rest validates.
A sample is block_size past points of every channel -> the next options.horizon points.
Model: encoder over the past (model.n_layer layers, model.n_embd wide), decoder of horizon
learned queries cross-attending to it (options.decoder_layers), a linear head.
options.dead_branch adds the report's "celestial" projections wired through an all-zero mask:
they run every step, yet their gradients are exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import Config
from trainer.errors import ConfigError
from trainer.training.tasks.base import LossOutput, Task
from trainer.training.tasks.options import knob, parse_options

LOSSES = ("mse", "mae", "huber")


def _at_least(n):
    return lambda v: (v >= n, f"must be >= {n}")


@dataclass
class RegressionOptions:
    channels: int = knob(4, _at_least(1), "number of series")
    length: int = knob(20_000, _at_least(100), "time points per series")
    period: int = knob(24, _at_least(2), "the short seasonal cycle; the long one is 7x")
    noise: float = knob(0.3, lambda v: (v >= 0, "must be >= 0"), "std of the AR(1) noise, relative to the seasons")
    horizon: int = knob(16, _at_least(1), "points predicted per window")
    loss: str = knob("mse", lambda v: (v in LOSSES, "must be one of " + ", ".join(LOSSES)))
    decoder_layers: int = knob(1, _at_least(1))
    train_noise: float = knob(
        0.0, lambda v: (v >= 0, "must be >= 0"), "std of noise added to training inputs and targets only (augmentation)"
    )
    dead_branch: bool = knob(False, None, "add projections whose output is masked out (report 001's dead params)")


def make_series(channels: int, length: int, period: int, noise: float, seed: int) -> torch.Tensor:
    """(length, channels) seasonal series with trend and AR(1) noise, determined by seed alone."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)[:, None]
    phase = torch.rand(2, channels, generator=g) * 2 * math.pi
    amp = 0.5 + torch.rand(2, channels, generator=g)
    seasons = amp[0] * torch.sin(2 * math.pi * t / period + phase[0])
    seasons = seasons + amp[1] * torch.sin(2 * math.pi * t / (7 * period) + phase[1])
    trend = (torch.rand(channels, generator=g) - 0.5) * t / length
    mix = torch.eye(channels) + 0.3 * torch.randn(channels, channels, generator=g) / math.sqrt(channels)
    shocks = torch.randn(length, channels, generator=g) * noise
    ar = torch.zeros(length, channels)
    for i in range(1, length):  # AR(1), phi = 0.8
        ar[i] = 0.8 * ar[i - 1] + shocks[i]
    return (seasons + trend) @ mix.T + ar


class Forecaster(nn.Module):
    def __init__(self, channels: int, context: int, horizon: int, cfg: Config, opts: RegressionOptions):
        super().__init__()
        d, heads, drop = cfg.model.n_embd, cfg.model.n_head, cfg.dropout
        self.in_proj = nn.Linear(channels, d)
        self.pos = nn.Parameter(torch.randn(context, d) * 0.02)
        self.queries = nn.Parameter(torch.randn(horizon, d) * 0.02)
        enc = nn.TransformerEncoderLayer(d, heads, 4 * d, drop, batch_first=True, norm_first=True)
        dec = nn.TransformerDecoderLayer(d, heads, 4 * d, drop, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.model.n_layer, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, opts.decoder_layers)
        self.norm = nn.LayerNorm(d)
        self.projection = nn.Linear(d, channels)
        self.dead_branch = opts.dead_branch
        if opts.dead_branch:
            self.celestial_query_projection = nn.Linear(d, d)
            self.celestial_key_projection = nn.Linear(d, d)
            # The bug under study: a mask meant to select "active bodies" that selects none.
            self.register_buffer("celestial_mask", torch.zeros(1, 1, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = self.encoder(self.in_proj(x) + self.pos[: x.size(1)])
        h = self.decoder(self.queries.expand(x.size(0), -1, -1), memory)
        if self.dead_branch:
            q, k = self.celestial_query_projection(h), self.celestial_key_projection(memory)
            attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.size(-1)), dim=-1)
            h = h + (attn @ memory) * self.celestial_mask  # always * 0: reaches the loss, carries nothing
        return self.projection(self.norm(h))


class Regression(Task):
    name = "regression"
    Options = RegressionOptions
    unit = "samples"

    def __init__(self, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1):
        super().__init__(cfg, device, rank, world_size)
        self.options = o = parse_options(self.name, RegressionOptions, cfg.options)
        series = make_series(o.channels, o.length, o.period, o.noise, cfg.seed)
        n_train = int(o.length * (1 - cfg.val_split))
        mean, std = series[:n_train].mean(0), series[:n_train].std(0)
        series = (series - mean) / std
        train, self.val_data = series[:n_train], series[n_train:]
        shard = len(train) // world_size
        self.train_data = train[rank * shard : (rank + 1) * shard]
        self.window = cfg.block_size + o.horizon
        shortest = min(len(self.val_data), len(self.train_data))
        if self.window >= shortest:
            raise ConfigError(
                f"block_size {cfg.block_size} + options.horizon {o.horizon} exceeds the shortest split "
                f"({shortest} points); use a block_size below {shortest - o.horizon} or a larger options.length"
            )
        self._offsets = torch.arange(self.window)

    def build_model(self) -> nn.Module:
        return Forecaster(self.options.channels, self.cfg.block_size, self.options.horizon, self.cfg, self.options)

    def units_per_batch(self) -> int:
        return self.cfg.batch_size

    def get_batch(self, split: str, generator: torch.Generator):
        data = self.train_data if split == "train" else self.val_data
        starts = torch.randint(len(data) - self.window, (self.cfg.batch_size,), generator=generator)
        windows = data[starts[:, None] + self._offsets]  # (B, context + horizon, C)
        x, y = windows[:, : self.cfg.block_size], windows[:, self.cfg.block_size :]
        return x.to(self.device), y.to(self.device)

    def compute_loss(self, model: nn.Module, batch, step: int) -> LossOutput:
        x, y = batch
        if model.training and self.options.train_noise > 0:
            # Augmentation seen only in training: the train/eval mismatch report 001 suspected.
            x = x + self.options.train_noise * torch.randn_like(x)
            y = y + self.options.train_noise * torch.randn_like(y)
        pred = model(x)
        if self.options.loss == "mse":
            loss = F.mse_loss(pred, y)
        elif self.options.loss == "mae":
            loss = F.l1_loss(pred, y)
        else:
            loss = F.huber_loss(pred, y)
        return LossOutput(loss=loss, probes={"out/pred_std": pred.detach().std(), "out/target_std": y.detach().std()})

    @torch.no_grad()
    def sample(self, model: nn.Module, step: int, generator: torch.Generator) -> dict:
        """The first channel of one validation window: the predicted horizon against the truth."""
        start = int(torch.randint(len(self.val_data) - self.window, (1,), generator=generator))
        window = self.val_data[start : start + self.window].to(self.device)
        pred = model(window[None, : self.cfg.block_size])
        return {"pred": pred[0, :, 0].float().cpu().tolist(), "target": window[self.cfg.block_size :, 0].cpu().tolist()}
