"""A synthetic run for the doctor's scenario suite: the records a healthy trainer would write.

RunGenerator draws (from its seed) the run length, logging interval, noise level, warm-up and
loss curve, then writes every series the doctor reads: metrics rows (loss, lr, grad/norm, speed,
memory, output spread, curriculum difficulty), evals, grads.jsonl probes and text samples. A
scenario's shape (healthy.py, failures.py beside this module) is a function that replaces some of
these series before the run is built. trainer/doctor/scenarios/__init__.py is the public entry:
labels, make(), write_run(), evaluate(). The text samples are windows of the checkout's
data/tinyshakespeare.txt (the package is installed editable: pip install -e .).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from trainer.config import Config, apply_overrides, from_dict
from trainer.config.curriculum import curriculum_difficulty
from trainer.config.schedule import lr_at

ROOT = Path(__file__).resolve().parents[3]  # the checkout: trainer/doctor/scenarios/run.py
CORPUS = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
PARAMS = [
    "tok_emb.weight",
    "blocks.0.attn.qkv.weight",
    "blocks.0.mlp.fc.weight",
    "blocks.1.attn.qkv.weight",
    "blocks.1.mlp.fc.weight",
    "celestial_key_projection.weight",
    "celestial_query_projection.weight",
    "head.weight",
]


@dataclass
class Scenario:
    name: str
    code: str | None
    sudden: bool
    onset: int | None
    evidence: int | None
    config: dict
    metrics: list = field(default_factory=list)
    grads: list = field(default_factory=list)
    samples: list = field(default_factory=list)

    @property
    def max_steps(self) -> int:
        return self.config["max_steps"]

    @property
    def log_interval(self) -> int:
        return self.config["log_interval"]


class RunGenerator:
    """One run's draws and series. A shape overrides attributes (series methods, onset, evidence,
    config overrides) in place; build() then writes the records."""

    def __init__(self, name, rng, code=None, sudden=False):
        self.name, self.rng = name, rng
        self.code, self.sudden = code, sudden
        r = rng
        self.max_steps = r.choice([3000, 4000, 6000, 8000])
        self.log_interval = r.choice([5, 10, 20])
        self.noise = r.uniform(0.01, 0.03)
        self.warmup = r.choice([50, 100, 200])
        self.l0, self.l_inf = 4.2, r.uniform(1.3, 1.7)
        self.tau = r.uniform(0.08, 0.2)  # fraction of the run
        self.onset_fraction = r.uniform(0.3, 0.7)
        self.overrides = {}
        self.regression = False
        self.onset = None
        self.evidence = None  # a step, or a function of the built config returning one

    def build(self, shape=None) -> Scenario:
        if shape is not None:
            shape(self)
        if self.code is not None and self.onset is None:
            self.onset = self.round_step(self.onset_fraction * self.max_steps)
        base = {
            "max_steps": self.max_steps,
            "log_interval": self.log_interval,
            "warmup_steps": self.warmup,
            "eval_interval": self.round_step(self.max_steps / 40),
            "probe_interval": self.round_step(self.max_steps / 60),
            "sample_interval": self.round_step(self.max_steps / 30),
            "schedule": "warmup_cosine",
        }
        base.update(self.overrides)
        config = from_dict(apply_overrides(Config().to_dict(), base)).to_dict()
        self.cfg = from_dict(config)
        s = Scenario(self.name, self.code, self.sudden, self.onset, self.evidence, config)
        if callable(self.evidence):
            s.evidence = self.evidence = self.evidence()
        for step in range(self.log_interval, self.max_steps + 1, self.log_interval):
            s.metrics.append(self.row(step))
            if step % self.cfg.eval_interval == 0:
                s.metrics.append({"step": step, "time": float(step), "val/loss": self.val(step)})
        for step in range(self.cfg.probe_interval, self.max_steps + 1, self.cfg.probe_interval):
            s.grads.append(self.grads(step))
        for step in range(0, self.max_steps + 1, self.cfg.sample_interval):
            s.samples.append(self.sample(step))
        if s.evidence is None:
            s.evidence = s.onset
        return s

    # --- helpers for shapes ------------------------------------------------------------------------
    def round_step(self, step) -> int:
        """The nearest logged step (at least the first)."""
        li = self.log_interval
        return max(li, int(round(step / li)) * li)

    def gauss(self, scale=1.0):
        return self.rng.gauss(0, scale)

    def after(self, step) -> bool:
        return self.onset is not None and step >= self.onset

    def first_step(self, predicate) -> int:
        """The first logged step for which predicate holds (max_steps if none)."""
        for step in range(self.log_interval, self.max_steps + 1, self.log_interval):
            if predicate(step):
                return step
        return self.max_steps

    # --- the series of a healthy run ------------------------------------------------------------------
    def progress(self, step) -> float:
        """Learning progress: grows with the LR, so a warm-up delays the drop."""
        return step / self.max_steps

    def loss_clean(self, step) -> float:
        return self.l_inf + (self.l0 - self.l_inf) * math.exp(-self.progress(step) / self.tau)

    def loss(self, step) -> float:
        return self.loss_clean(step) * (1 + self.gauss(self.noise))

    def val(self, step):
        return self.loss_clean(step) * 1.03 * (1 + self.gauss(self.noise / 4))

    def lr(self, step):
        return lr_at(step, self.cfg)

    def row(self, step) -> dict:
        row = {
            "step": step,
            "time": float(step),
            "lr": self.lr(step),
            "train/loss": self.loss(step),
            "grad/norm": self.grad_norm(step),
            "speed/steps_per_s": self.speed(step),
            "speed/tokens_per_s": self.speed(step) * 768,
            "sys/rss_mb": self.rss(step),
            "sys/cpu_percent": 180 + self.gauss(10),
        }
        if self.regression:
            pred, target = self.stds(step)
            row.update({"out/pred_std": pred, "out/target_std": target, "out/variance_ratio": pred / target})
        d = self.difficulty(step)
        if d is not None:
            row["curriculum/difficulty"] = d
        return row

    def difficulty(self, step):
        return curriculum_difficulty(step, self.cfg.curriculum)

    def grad_norm(self, step):
        return 0.8 * math.exp(self.gauss(0.2))

    def speed(self, step):
        return 1.0 * (1 + self.gauss(0.05))

    def rss(self, step):
        return 900 + 60 * min(1.0, step / (0.05 * self.max_steps)) + self.gauss(3)

    def stds(self, step):
        target = 0.86 * (1 + self.gauss(0.03))
        ratio = 0.9 - 0.85 * math.exp(-step / (0.02 * self.max_steps))
        return ratio * target * (1 + self.gauss(0.05)), target

    def grads(self, step):
        norms = {p: 0.01 * math.exp(self.gauss(0.5)) for p in PARAMS}
        return {"step": step, "time": float(step), "norms": norms, "update_ratios": {p: 1e-3 for p in PARAMS}}

    def text(self, step):
        i = self.rng.randrange(0, len(CORPUS) - 200)
        return CORPUS[i : i + 200]

    def sample(self, step):
        return {"step": step, "time": float(step), "text": self.text(step)}
