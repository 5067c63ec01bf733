"""discrete_diffusion: absorbing-state (masked) discrete diffusion, SEDD/MDLM style, on synthetic
protein-like sequences, the model of incident report 002. Presets: configs/discrete_diffusion.yaml
(healthy), configs/discrete_diffusion_curriculum.yaml (loss rising under a too-fast exponential
curriculum).

    python -m trainer run --config configs/discrete_diffusion.yaml

Data: sequences of block_size letters over the 20 amino acids, drawn from the seed alone:
a first-order Markov background (peaked transitions), and 1-3 of options.n_motifs planted motifs
(6-10 letters) per sequence, so a model can learn to fill in a motif from the letters around it.
Forward process: each letter is replaced by the absorbing MASK with probability 1 - exp(-sigma),
sigma = difficulty * options.sigma_max * t with t ~ U(0, 1).
Loss: cross-entropy of the masked letters, summed and divided by the sequence length (so it
grows with the share masked: an easy curriculum start scores ~0.3, full difficulty ~2, as in the
report). The curriculum (config curriculum: ramp, preschool_steps, start) sets `difficulty`,
logged as curriculum/difficulty, so a loss that rises with it is told apart from a divergence.
EMA, warm-up and grad clip are the engine's (config ema, warmup_steps, grad_clip).
Sampling: start all-masked, unmask step by step (options.sample_steps) from the predicted letters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import Config
from trainer.config.curriculum import curriculum_difficulty
from trainer.errors import ConfigError
from trainer.training.tasks.base import LossOutput, Task
from trainer.training.tasks.denoiser import Denoiser
from trainer.training.tasks.options import knob, parse_options

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MASK = len(AMINO_ACIDS)  # the absorbing state's id


def _at_least(n):
    return lambda v: (v >= n, f"must be >= {n}")


@dataclass
class DiscreteDiffusionOptions:
    sigma_max: float = knob(3.0, lambda v: (v > 0, "must be > 0"), "total noise at t=1, full difficulty")
    n_sequences: int = knob(4000, _at_least(20), "sequences generated (val_split of them validate)")
    n_motifs: int = knob(8, _at_least(1), "distinct planted motifs")
    sample_steps: int = knob(32, _at_least(1), "unmasking steps when sampling")


def make_sequences(n: int, length: int, n_motifs: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """(n, length) letter ids with planted motifs, and the motifs as strings; from seed alone."""
    g = torch.Generator().manual_seed(seed)
    # Background: a first-order Markov chain with peaked transitions, so neighbours predict a letter.
    transitions = torch.softmax(3.0 * torch.randn(20, 20, generator=g), dim=-1)
    seqs = torch.empty(n, length, dtype=torch.long)
    seqs[:, 0] = torch.randint(20, (n,), generator=g)
    for i in range(1, length):
        seqs[:, i] = torch.multinomial(transitions[seqs[:, i - 1]], 1, generator=g)[:, 0]
    motifs = [torch.randint(20, (int(torch.randint(6, 11, (1,), generator=g)),), generator=g) for _ in range(n_motifs)]
    for row in seqs:
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            motif = motifs[int(torch.randint(n_motifs, (1,), generator=g))]
            if len(motif) >= length:
                continue
            start = int(torch.randint(length - len(motif) + 1, (1,), generator=g))
            row[start : start + len(motif)] = motif
    return seqs, ["".join(AMINO_ACIDS[i] for i in m) for m in motifs]


class MaskedDenoiser(nn.Module):
    """Letters (MASK included) and a noise level -> logits over the 20 letters at every position."""

    def __init__(self, block_size: int, cfg: Config):
        super().__init__()
        m = cfg.model
        self.embed = nn.Embedding(len(AMINO_ACIDS) + 1, m.n_embd)
        self.denoiser = Denoiser(
            m.n_embd, len(AMINO_ACIDS), block_size, m.n_layer, m.n_head, m.n_embd, cfg.dropout, m.bias
        )

    def forward(self, tokens: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        return self.denoiser(self.embed(tokens), noise_level)


class DiscreteDiffusion(Task):
    name = "discrete_diffusion"
    Options = DiscreteDiffusionOptions
    unit = "tokens"

    def __init__(self, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1):
        super().__init__(cfg, device, rank, world_size)
        self.options = o = parse_options(self.name, DiscreteDiffusionOptions, cfg.options)
        if cfg.block_size < 12:
            raise ConfigError(f"block_size {cfg.block_size} is shorter than the motifs; use at least 12")
        seqs, self.motifs = make_sequences(o.n_sequences, cfg.block_size, o.n_motifs, cfg.seed)
        n_val = max(1, int(o.n_sequences * cfg.val_split))
        train, self.val_data = seqs[n_val:], seqs[:n_val]
        shard = len(train) // world_size
        if shard < 1:
            raise ConfigError(f"options.n_sequences {o.n_sequences} leaves no training sequences per process")
        self.train_data = train[rank * shard : (rank + 1) * shard]

    def build_model(self) -> nn.Module:
        return MaskedDenoiser(self.cfg.block_size, self.cfg)

    def difficulty(self, step: int) -> float | None:
        return curriculum_difficulty(step, self.cfg.curriculum)

    def get_batch(self, split: str, generator: torch.Generator):
        data = self.train_data if split == "train" else self.val_data
        rows = torch.randint(len(data), (self.cfg.batch_size,), generator=generator)
        return data[rows].to(self.device)

    def compute_loss(self, model: nn.Module, batch, step: int) -> LossOutput:
        clean = batch
        # Validation is scored at full difficulty, so val/loss is comparable across the ramp.
        difficulty = (self.difficulty(step) or 1.0) if model.training else 1.0
        t = torch.rand(clean.size(0), device=clean.device)
        sigma = difficulty * self.options.sigma_max * t
        mask_prob = -torch.expm1(-sigma)  # 1 - exp(-sigma)
        masked = torch.rand(clean.shape, device=clean.device) < mask_prob[:, None]
        noisy = torch.where(masked, torch.full_like(clean, MASK), clean)
        logits = model(noisy, mask_prob)
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), clean.reshape(-1), reduction="none")
        loss = (ce * masked.reshape(-1)).sum() / clean.numel()
        return LossOutput(loss=loss, parts={"mask_share": masked.float().mean().detach()})

    @torch.no_grad()
    def sample(self, model: nn.Module, step: int, generator: torch.Generator) -> dict:
        n_seq = max(1, math.ceil(self.cfg.sample_length / self.cfg.block_size))
        seqs = self.unmask(model, n_seq, generator)
        lines = ["".join(AMINO_ACIDS[i] for i in row) for row in seqs.tolist()]
        text = "\n".join(lines)
        return {"text": text, "motif_hits": sum(m in line for line in lines for m in self.motifs)}

    def unmask(self, model: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        """The reverse process: from all-MASK, reveal each masked letter with the probability that
        it is unmasked between two noise levels, drawing it from the model's prediction."""
        T, sigma_max = self.cfg.block_size, self.options.sigma_max
        x = torch.full((n, T), MASK, dtype=torch.long)
        levels = torch.linspace(1.0, 0.0, self.options.sample_steps + 1)
        for i in range(self.options.sample_steps):
            p_now = -math.expm1(-sigma_max * float(levels[i]))
            p_next = -math.expm1(-sigma_max * float(levels[i + 1]))
            logits = model(x.to(self.device), torch.full((n,), p_now, device=self.device)).float().cpu()
            probs = F.softmax(logits, dim=-1).view(-1, len(AMINO_ACIDS))
            drawn = torch.multinomial(probs, 1, generator=generator).view(n, T)
            reveal = (torch.rand(n, T, generator=generator) < (p_now - p_next) / p_now) & (x == MASK)
            x = torch.where(reveal, drawn, x)
        return x
