"""An independent reference for the quality benchmark: nanoGPT's shakespeare_char CPU run (its
README's `train.py config/train_shakespeare_char.py --device=cpu --compile=False ... --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0`), written out plainly with nothing from trainer/: the model,
init, optimizer groups, get_lr, batch sampling from the global RNG and loop order follow nanoGPT's
model.py and train.py. If the trainer and this loop end at the same val/loss, the gap to a target
lies in the recipe, not in the trainer.

    python benchmarks/nanogpt_reference.py [--seed 1337] [--steps 2000]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CORPUS = Path(__file__).resolve().parents[1] / "data" / "tinyshakespeare.txt"


@dataclass(frozen=True)
class Recipe:
    """The README CPU run: train_shakespeare_char.py with its command-line overrides."""

    block_size: int = 64
    batch_size: int = 12
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    max_iters: int = 2000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0


def encode_corpus(path: Path = CORPUS) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train ids, val ids, vocab size): every character a token, the first 90% trains."""
    text = path.read_text(encoding="utf-8")
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(len(data) * 0.9)
    return data[:n], data[n:], len(stoi)


class Block(nn.Module):
    def __init__(self, r: Recipe):
        super().__init__()
        self.n_head = r.n_head
        self.ln_1 = nn.LayerNorm(r.n_embd, bias=False)
        self.c_attn = nn.Linear(r.n_embd, 3 * r.n_embd, bias=False)
        self.attn_proj = nn.Linear(r.n_embd, r.n_embd, bias=False)
        self.ln_2 = nn.LayerNorm(r.n_embd, bias=False)
        self.c_fc = nn.Linear(r.n_embd, 4 * r.n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * r.n_embd, r.n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in self.c_attn(self.ln_1(x)).split(C, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class ReferenceGPT(nn.Module):
    def __init__(self, r: Recipe, vocab_size: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, r.n_embd)
        self.wpe = nn.Embedding(r.block_size, r.n_embd)
        self.h = nn.ModuleList(Block(r) for _ in range(r.n_layer))
        self.ln_f = nn.LayerNorm(r.n_embd, bias=False)
        self.lm_head = nn.Linear(r.n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # nanoGPT's c_proj: scaled for the residual stream
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * r.n_layer))

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def get_lr(it: int, r: Recipe) -> float:
    if it < r.warmup_iters:
        return r.learning_rate * (it + 1) / (r.warmup_iters + 1)
    ratio = (it - r.warmup_iters) / (r.max_iters - r.warmup_iters)
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r.learning_rate - r.min_lr)


def train_reference(seed: int, r: Recipe = Recipe()) -> tuple[ReferenceGPT, torch.Tensor]:
    """Train as nanoGPT does (global RNG seeded once; the next batch is drawn right after the
    forward pass) for max_iters updates; returns the model and the validation ids."""
    train_ids, val_ids, vocab = encode_corpus()
    torch.manual_seed(seed)
    model = ReferenceGPT(r, vocab)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=r.learning_rate,
        betas=r.betas,
    )

    def batch():
        ix = torch.randint(len(train_ids) - r.block_size, (r.batch_size,))
        return torch.stack([train_ids[i : i + r.block_size] for i in ix]), torch.stack(
            [train_ids[i + 1 : i + 1 + r.block_size] for i in ix]
        )

    x, y = batch()
    for it in range(r.max_iters):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it, r)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        x, y = batch()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, val_ids


@torch.no_grad()
def split_loss(model: nn.Module, ids: torch.Tensor, block_size: int, rows: int = 256) -> float:
    """Mean next-character loss over the whole split, cut into consecutive block_size windows: the
    figure random eval batches estimate, without their sampling noise."""
    was_training = model.training
    model.eval()
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, rows):
        logits = model(x[i : i + rows])
        total += F.cross_entropy(logits.flatten(0, 1), y[i : i + rows].flatten(), reduction="sum").item()
    model.train(was_training)
    return total / (n * block_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--steps", type=int, default=Recipe.max_iters)
    args = parser.parse_args()
    recipe = Recipe(max_iters=args.steps)
    start = time.time()
    model, val_ids = train_reference(args.seed, recipe)
    loss = split_loss(model, val_ids, recipe.block_size)
    print(
        f"nanoGPT reference, seed {args.seed}: val/loss {loss:.4f} on the whole val split ({time.time() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
