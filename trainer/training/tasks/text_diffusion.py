"""text_diffusion: continuous diffusion over learned character embeddings (Diffusion-LM) on tiny
Shakespeare, the model of incident report 000. Presets: configs/text_diffusion.yaml (healthy),
configs/text_diffusion_collapse.yaml (the punctuation/mode collapse).

    python -m trainer run --config configs/text_diffusion.yaml

Training: each character is embedded (options.embed_dim), noised to a random level t with the
sqrt schedule of Diffusion-LM (alpha_bar = 1 - sqrt(t)), and a small bidirectional transformer
with dropout predicts the clean embeddings x0. Loss = diffusion (MSE of predicted x0) +
w(step) * rounding (cross-entropy from predicted x0 back to the characters, logits = x0 . E^T),
w decaying linearly from options.rounding_weight to options.rounding_weight_final over max_steps
(the report's "dynamic loss rebalancing").
Sampling: deterministic DDIM reverse process from pure noise, then rounding to characters.
init_from: a char_lm checkpoint initialises the character embeddings (its first principal
components, so embed_dim may differ from the GPT's width); the engine leaves init_from to tasks.
options.tokenizer=word diffuses words and punctuation marks instead of characters: the setting
of the report's tokenizer, where ',' and ':' are the most frequent tokens.
Samples carry punctuation_share, whitespace_share and distinct_chars beside the text.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import Config
from trainer.errors import ConfigError
from trainer.training.checkpoint import load_checkpoint
from trainer.training.tasks.base import LossOutput, Task
from trainer.training.tasks.char_lm import resolve_data_path
from trainer.training.tasks.denoiser import Denoiser
from trainer.training.tasks.options import knob, linear_decay, parse_options

PUNCTUATION = set(string.punctuation)
# Words and single punctuation marks; whitespace (newlines too) only separates them.
WORD_RE = re.compile(r"[A-Za-z]+|[^A-Za-z\s]")
UNKNOWN_WORD = "UNK"


@dataclass
class TextDiffusionOptions:
    tokenizer: str = knob(
        "char",
        lambda v: (v in ("char", "word"), "must be one of char, word"),
        "char: one token per character; word: words and punctuation marks (the report's setting, "
        "where ',' and ':' are the most frequent tokens)",
    )
    vocab_size: int = knob(2000, lambda v: (v >= 16, "must be >= 16"), "word tokenizer only: most frequent words kept")
    embed_dim: int = knob(16, lambda v: (v >= 2, "must be >= 2"), "width of the diffused character embeddings")
    rounding_weight: float = knob(0.5, lambda v: (v >= 0, "must be >= 0"), "rounding-loss weight at step 0")
    rounding_weight_final: float = knob(
        0.05, lambda v: (v >= 0, "must be >= 0"), "rounding-loss weight at max_steps (linear decay)"
    )
    sample_steps: int = knob(50, lambda v: (v >= 1, "must be >= 1"), "reverse-process steps when sampling")
    clamp: bool = knob(False, None, "snap each predicted x0 to the nearest character while sampling (Diffusion-LM)")
    min_noise: float = knob(1e-4, lambda v: (0 <= v < 1, "must be in [0, 1)"), "the sqrt schedule's offset s")


def alpha_bar(t: torch.Tensor, s: float) -> torch.Tensor:
    """Diffusion-LM's sqrt schedule: the share of signal left at noise level t in [0, 1]."""
    return (1.0 - torch.sqrt(t + s)).clamp(min=1e-5)


def punctuation_share(text: str) -> float:
    """Share of the visible (non-whitespace) characters that are punctuation; 0 for blank text.

    Shakespeare itself scores about 0.05 (characters) either way it is tokenised; report 000's
    collapsed samples (":::,:,,:,,,::,:,") score above 0.9.
    """
    visible = [c for c in text if not c.isspace()]
    return sum(c in PUNCTUATION for c in visible) / max(1, len(visible))


class Vocabulary:
    """Characters, or words + punctuation marks + newlines (the most frequent vocab_size - 1, plus UNK)."""

    def __init__(self, text: str, tokenizer: str, vocab_size: int):
        self.tokenizer = tokenizer
        if tokenizer == "char":
            self.tokens = sorted(set(text))
            pieces = text
        else:
            pieces = WORD_RE.findall(text)
            common = [w for w, _ in Counter(pieces).most_common(vocab_size - 1)]
            self.tokens = [UNKNOWN_WORD, *sorted(common)]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.ids = torch.tensor([self.index.get(p, 0) for p in pieces], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.tokens)

    def decode(self, ids) -> str:
        if self.tokenizer == "char":
            return "".join(self.tokens[i] for i in ids)
        out = []
        for i in ids:
            token = self.tokens[i]
            # A space before each word; punctuation sticks to the word on its left.
            if token[0].isalpha() and out:
                out.append(" ")
            out.append(token)
        return "".join(out)


def text_statistics(text: str) -> dict:
    """What the samples of report 000 were judged by: punctuation share, whitespace, variety."""
    n = max(1, len(text))
    return {
        "punctuation_share": punctuation_share(text),
        "whitespace_share": sum(c.isspace() for c in text) / n,
        "distinct_chars": len(set(text)),
    }


class TextDiffusionModel(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, block_size: int, cfg: Config, min_noise: float):
        super().__init__()
        m = cfg.model
        self.min_noise = min_noise
        self.embed = nn.Embedding(vocab_size, embed_dim)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.denoiser = Denoiser(embed_dim, embed_dim, block_size, m.n_layer, m.n_head, m.n_embd, cfg.dropout, m.bias)

    def round_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.embed.weight.t()

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
        """(clean embeddings x0, predicted x0, rounding logits of the prediction)."""
        x0 = self.embed(tokens)
        a = alpha_bar(t, self.min_noise)[:, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        x0_hat = self.denoiser(x_t, t)
        return x0, x0_hat, self.round_logits(x0_hat)


class TextDiffusion(Task):
    name = "text_diffusion"
    Options = TextDiffusionOptions
    unit = "tokens"

    def __init__(self, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1):
        super().__init__(cfg, device, rank, world_size)
        self.options = parse_options(self.name, TextDiffusionOptions, cfg.options)
        text = resolve_data_path(cfg.data_path).read_text(encoding="utf-8")
        self.vocab = Vocabulary(text, self.options.tokenizer, self.options.vocab_size)
        if cfg.init_from and self.options.tokenizer != "char":
            raise ConfigError(
                "init_from: a char_lm checkpoint only fits options.tokenizer=char; set it or drop init_from"
            )
        data = self.vocab.ids
        n_train = int(len(data) * (1 - cfg.val_split))
        train, self.val_data = data[:n_train], data[n_train:]
        shard = len(train) // world_size
        self.train_data = train[rank * shard : (rank + 1) * shard]
        limit = min(len(self.val_data), len(self.train_data)) - 1
        if cfg.block_size > limit:
            raise ConfigError(f"block_size {cfg.block_size} exceeds the data split; use at most {limit}")
        self._offsets = torch.arange(cfg.block_size)

    def decode(self, ids) -> str:
        return self.vocab.decode(ids)

    handles_init_from = True  # init_from seeds the embeddings only (build_model), not every weight

    def build_model(self) -> nn.Module:
        model = TextDiffusionModel(
            len(self.vocab), self.options.embed_dim, self.cfg.block_size, self.cfg, self.options.min_noise
        )
        if self.cfg.init_from:
            self._init_embeddings_from(model, self.cfg.init_from)
        return model

    def _init_embeddings_from(self, model: TextDiffusionModel, path: str) -> None:
        """Character embeddings from a char_lm checkpoint: its top principal components, unit std."""
        state = load_checkpoint(path)
        wte = state["model"].get("wte.weight")
        if wte is None or wte.shape[0] != len(self.vocab):
            raise ConfigError(
                f"init_from: {path} is not a char_lm checkpoint of this corpus ({len(self.vocab)} characters); "
                "train one with configs/shakespeare_char.yaml or leave init_from empty"
            )
        centred = wte.float() - wte.float().mean(0)
        k = min(self.options.embed_dim, centred.shape[1])
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        proj = centred @ v[:k].t()
        with torch.no_grad():
            model.embed.weight[:, :k] = proj / proj.std()

    def get_batch(self, split: str, generator: torch.Generator):
        data = self.train_data if split == "train" else self.val_data
        starts = torch.randint(len(data) - self.cfg.block_size, (self.cfg.batch_size,), generator=generator)
        return data[starts[:, None] + self._offsets].to(self.device)

    def rounding_weight(self, step: int) -> float:
        o = self.options
        return linear_decay(step, self.cfg.max_steps, o.rounding_weight, o.rounding_weight_final)

    def compute_loss(self, model: nn.Module, batch, step: int) -> LossOutput:
        tokens = batch
        # Noise levels and noise use the global RNG (checkpointed by the engine), not the batch generator.
        t = torch.rand(tokens.size(0), device=tokens.device)
        noise = torch.randn(*tokens.shape, self.options.embed_dim, device=tokens.device)
        x0, x0_hat, logits = model(tokens, t, noise)
        diffusion = F.mse_loss(x0_hat, x0)
        rounding = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens.reshape(-1))
        loss = diffusion + self.rounding_weight(step) * rounding
        return LossOutput(
            loss=loss,
            parts={"diffusion": diffusion.detach(), "rounding": rounding.detach()},
            probes={"out/pred_std": x0_hat.detach().std(), "out/target_std": x0.detach().std()},
        )

    @torch.no_grad()
    def sample(self, model: nn.Module, step: int, generator: torch.Generator) -> dict:
        model = getattr(model, "module", model)
        T = self.cfg.block_size
        n_seq = math.ceil(self.cfg.sample_length / T)
        ids = self.reverse_process(model, n_seq, T, generator).reshape(-1).tolist()
        text = self.decode(ids)[: self.cfg.sample_length]
        return {"text": text, **text_statistics(text)}

    def reverse_process(self, model: TextDiffusionModel, n: int, length: int, generator: torch.Generator):
        """Deterministic DDIM from pure noise to characters: (n, length) token ids."""
        d, s = self.options.embed_dim, self.options.min_noise
        x = torch.randn(n, length, d, generator=generator).to(self.device)
        levels = torch.linspace(1.0, 0.0, self.options.sample_steps + 1, device=self.device)
        for i in range(self.options.sample_steps):
            t, t_next = levels[i].expand(n), levels[i + 1].expand(n)
            x0_hat = model.denoiser(x, t)
            if self.options.clamp:
                x0_hat = model.embed(model.round_logits(x0_hat).argmax(-1))
            a, a_next = alpha_bar(t, s)[:, None, None], alpha_bar(t_next, s)[:, None, None]
            eps = (x - a.sqrt() * x0_hat) / (1 - a).sqrt()
            x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
        return model.round_logits(x0_hat).argmax(-1).cpu()
