"""The noise-free draft of a run from another program: which program wrote it, what it logs, and
its clean curves (loss, LR, gradient norm, speed, memory, evals, outputs, samples).

`draw(rng, **choices)` draws every choice a shape leaves open from the seed; a shape (healthy.py,
failures.py) then bends the clean curves, and assemble.py adds the noise and writes the records.
Where a range comes from is said beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainer.doctor.wildsuite import schedules

PROGRAMS = ("hf_trainer", "timm", "lightning", "script")
# Schedules each program typically runs with (HF's default is linear; timm's cosine; Lightning
# scripts often use OneCycleLR or MultiStepLR; a plain script anything).
SCHEDULES = {
    "hf_trainer": ("linear", "linear", "cosine", "constant_with_warmup", "inverse_sqrt"),
    "timm": ("cosine", "cosine", "step"),
    "lightning": ("one_cycle", "constant", "step", "cosine"),
    "script": ("constant", "cosine", "one_cycle", "step", "inverse_sqrt", "linear"),
}
TASKS = ("text", "text", "regression", "vision")
# Interval between logged train rows: nanoGPT logs every 1-10, HF every 10-500 (default 500),
# Lightning every 50 by default.
LOG_INTERVALS = (1, 5, 10, 10, 20, 25, 50, 100)

PARAMS = {
    "text": (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.1.attn.c_attn.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ),
    "regression": (
        "encoder.input_proj.weight",
        "encoder.layers.0.self_attn.in_proj_weight",
        "encoder.layers.0.linear1.weight",
        "encoder.layers.1.self_attn.in_proj_weight",
        "celestial_key_projection.weight",
        "celestial_query_projection.weight",
        "projection.weight",
        "projection.bias",
    ),
    "vision": (
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer2.0.conv1.weight",
        "layer3.0.conv2.weight",
        "layer4.1.conv2.weight",
        "fc.weight",
        "fc.bias",
    ),
}


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass
class Draft:
    """A run's clean curves at its logged train rows (`steps`), evals and samples, plus its labels."""

    rng: np.random.Generator
    program: str
    task: str
    schedule: str
    max_steps: int
    log_interval: int
    steps: np.ndarray
    lr_peak: float
    warmup: int
    lr: np.ndarray
    log_lr: bool
    loss: np.ndarray
    loss_noise: float  # relative sigma of one logged train row
    grad: np.ndarray
    log_grad: bool
    grad_noise: float  # sigma of log(grad norm) of one row
    speed: np.ndarray  # true steps/s over each row's interval (always sets the clock)
    log_speed: bool
    speed_noise: float
    rss: np.ndarray
    log_rss: bool
    cuda: np.ndarray | None
    eval_steps: np.ndarray
    val: np.ndarray
    val_noise: float
    ratio: np.ndarray | None  # prediction std / target std at train rows (numeric tasks)
    ratio_every: int
    target_std: float
    sample_steps: np.ndarray
    quality: np.ndarray
    punct: np.ndarray
    probe_steps: np.ndarray
    param_scales: dict
    config: dict | None
    status_kind: str  # api (trainer.init, the HF callback), imported, none (no status.json)
    dead: dict = field(default_factory=dict)  # parameter -> first step its gradient is exactly 0
    extra: dict = field(default_factory=dict)  # other series at train rows (epoch, curriculum)
    bad: dict = field(default_factory=dict)  # series -> (first step, value) non-finite from there
    grad_bad_steps: tuple = ()  # isolated rows whose grad/norm is inf (fp16 loss-scale overflow)
    last_step: int | None = None  # a crash: nothing is logged past it
    resumes: list = field(default_factory=list)  # (step, wall-clock gap in s)
    events: list = field(default_factory=list)  # extra events: (step, kind, message, extra)
    code: str | None = None
    sudden: bool = False
    onset: int | None = None
    evidence: int | None = None

    @property
    def progress(self) -> np.ndarray:
        return self.steps / self.max_steps

    def row(self, step: int) -> int:
        """Index of the first train row at or after step."""
        return int(min(len(self.steps) - 1, np.searchsorted(self.steps, step)))

    def snap(self, step: float) -> int:
        """The logged train step at or after `step`: where a failure's onset can be seen."""
        return int(self.steps[self.row(int(step))])

    def loss_at(self, steps) -> np.ndarray:
        return np.interp(steps, self.steps, self.loss)

    def curriculum_loss(self, difficulty: np.ndarray) -> np.ndarray:
        """Loss under a curriculum (report 002, SEDD): the full-difficulty loss falls slowly from
        2-3 (2.23 there) by 20-50% over the run, and easy examples cost 10% of it (0.26 at the
        start there), so the logged loss follows the difficulty up first."""
        rng = self.rng
        high = rng.uniform(2.0, 3.0)
        full = high * (1 - rng.uniform(0.2, 0.5) * (1 - np.exp(-self.steps / (self.max_steps * rng.uniform(0.2, 0.5)))))
        return full * (0.1 + 0.9 * difficulty)

    def label(self, code: str, sudden: bool, onset: int, evidence: int | None = None) -> Draft:
        self.code, self.sudden, self.onset = code, sudden, int(onset)
        self.evidence = int(onset if sudden or evidence is None else max(onset, evidence))
        return self

    def seen_every(self) -> int:
        """Steps between rows of the series that shows this run's failure: evals for val-loss
        failures, samples for text collapse, probes for dead parameters, else train rows."""
        spaced = {
            "val_below_train": self.eval_steps,
            "overfitting": self.eval_steps,
            "token_collapse": self.sample_steps,
            "dead_parameters": self.probe_steps,
        }.get(self.code)
        if self.code == "variance_collapse" and self.ratio is not None:
            return self.log_interval * self.ratio_every
        if spaced is None or len(spaced) < 2:
            return self.log_interval
        return int(np.median(np.diff(spaced)))


def _lengths(rng, log_interval: int | None, max_steps: int | None) -> tuple[int, int]:
    li = int(log_interval or rng.choice(LOG_INTERVALS))
    if max_steps is None:
        # 60-1500 logged rows: a short fine-tune logged every step to a long run logged every 100.
        max_steps = int(li * round(loguniform(rng, 60, 1500 if li < 50 else 300)))
        max_steps = max(max_steps, 500)
    return li, int(math.ceil(max_steps / li) * li)


def _lr(schedule: str, steps, peak, warmup, total, rng) -> tuple[np.ndarray, dict]:
    if schedule == "linear":
        return schedules.hf_linear(steps, peak, warmup, total), {}
    if schedule == "cosine":
        per = int(rng.choice([1, 1, max(1, total // int(rng.integers(20, 100)))]))  # timm: per epoch
        floor = float(rng.choice([0.0, peak * 1e-3, 1e-6]))
        return schedules.cosine(steps, peak, warmup, total, floor, per), {"min_lr": floor, "steps_per_update": per}
    if schedule == "step":
        options = ([0.5, 0.75], [0.3, 0.6, 0.8], [0.33, 0.66])  # torchvision/timm recipes
        milestones = [int(total * f) for f in options[int(rng.integers(len(options)))]]
        gamma = float(rng.choice([0.1, 0.1, 0.2, 0.5]))
        return schedules.step_decay(steps, peak, milestones, gamma), {"milestones": milestones, "gamma": gamma}
    if schedule == "one_cycle":
        return schedules.one_cycle(steps, peak, total), {}
    if schedule == "constant_with_warmup":
        return schedules.constant(steps, peak, warmup), {}
    if schedule == "inverse_sqrt":
        return schedules.inverse_sqrt(steps, peak, max(warmup, 1)), {}
    return schedules.constant(steps, peak), {}


def _loss(rng, task: str, finetune: bool, steps, total) -> tuple[np.ndarray, float]:
    # Starting and final losses: ln(vocab) for a char LM (65 symbols: 4.17) or GPT-2 (10.8);
    # nanoGPT's shakespeare_char ends near 1.0-1.5 (val), GPT-2 small on web text near 3;
    # a fine-tune starts at 2.5-4 and moves 5-15%; MSE on standardised targets starts near 1;
    # ImageNet cross-entropy starts at ln(1000) = 6.9, CIFAR-10 at ln(10) = 2.3.
    if finetune:
        start = rng.uniform(2.5, 4.0) if task == "text" else rng.uniform(0.3, 1.2)
        floor = start * rng.uniform(0.85, 0.95)
    elif task == "text":
        start, floor = (math.log(65), rng.uniform(1.0, 1.7)) if rng.random() < 0.6 else (10.8, rng.uniform(2.9, 4.5))
    elif task == "regression":
        start, floor = rng.uniform(0.8, 1.2), rng.uniform(0.05, 0.5)
    else:
        start = math.log(1000) if rng.random() < 0.5 else math.log(10)
        floor = start * rng.uniform(0.1, 0.4)
    tau = total * rng.uniform(0.005, 0.08)
    alpha = rng.uniform(0.7, 2.0)
    return floor + (start - floor) * (1 + np.asarray(steps) / tau) ** -alpha, floor


def _config(program, d_lr, schedule, peak, warmup, total, li, eval_every, sched_info, rng, kind):
    if kind == "none":
        return None
    bs = int(rng.choice([8, 16, 32, 64, 128, 256]))
    if program == "hf_trainer":
        config = {
            "output_dir": "out",
            "learning_rate": peak,
            "lr_scheduler_type": schedule,
            "warmup_steps": warmup,
            "max_steps": total,
            "logging_steps": li,
            "eval_steps": eval_every,
            "per_device_train_batch_size": bs,
            "weight_decay": float(rng.choice([0.0, 0.01])),
            "max_grad_norm": 1.0,
            "seed": 42,
            "model": {"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768},
        }
    elif program == "timm":
        config = {"model": "resnet50", "lr": peak, "sched": "multistep" if schedule == "step" else "cosine"}
        config.update({"epochs": int(rng.integers(30, 300)), "warmup_epochs": int(rng.integers(0, 6))})
        config.update({"min_lr": sched_info.get("min_lr", 0.0), "batch_size": bs, "opt": "sgd", "momentum": 0.9})
        if schedule == "step":
            config.update({"decay_milestones": sched_info["milestones"], "decay_rate": sched_info["gamma"]})
    elif program == "lightning":
        config = {"learning_rate": peak, "batch_size": bs, "max_epochs": int(rng.integers(5, 50)), "hidden_dim": 256}
    else:  # a plain script's own dict, as in docs/logging-api.md's example; some use our key names
        config = (
            {"lr": peak, "steps": total, "batch_size": bs} if rng.random() < 0.5 else {"lr": peak, "max_steps": total}
        )
    if kind == "partial":  # keys lost on the way (a hand-written YAML, an old export)
        keep = [k for k in config if rng.random() < 0.5]
        config = {k: config[k] for k in keep}
    return config


def draw(
    rng: np.random.Generator,
    program: str | None = None,
    task: str | None = None,
    schedule: str | None = None,
    log_interval: int | None = None,
    max_steps: int | None = None,
    finetune: bool = False,
    noisy: bool = False,
    eval_kind: str | None = None,
    config_kind: str | None = None,
    keys: str | None = None,
) -> Draft:
    """A healthy run's draft; every argument left None is drawn from rng."""
    program = program or str(rng.choice(PROGRAMS))
    task = task or str(rng.choice(TASKS))
    schedule = schedule or str(rng.choice(SCHEDULES[program]))
    li, total = _lengths(rng, log_interval, max_steps)
    steps = np.arange(li, total + 1, li)
    progress = steps / total

    # Peak LR: fine-tunes 1e-5..5e-5 (HF examples), Adam from scratch 1e-4..3e-3, SGD 0.05..0.4.
    if finetune:
        peak = loguniform(rng, 1e-5, 5e-5)
    elif program == "timm" or (task == "vision" and rng.random() < 0.5):
        peak = loguniform(rng, 0.05, 0.4)
    else:
        peak = loguniform(rng, 1e-4, 3e-3)
    warmup = int(total * rng.choice([0.0, 0.02, 0.05, 0.1])) if schedule != "one_cycle" else 0
    lr, sched_info = _lr(schedule, steps, peak, warmup, total, rng)

    loss, floor = _loss(rng, task, finetune, steps, total)
    # Per-row noise of a logged mean: batch noise 1-6% of the loss per step (10-25% for a small
    # batch) shrinks with the rows' interval, over a floor of 0.2-1% from data-order drift.
    step_noise = rng.uniform(0.10, 0.25) if noisy else rng.uniform(0.01, 0.06)
    if task == "regression":
        step_noise *= 2  # MSE of small batches is noisier than cross-entropy
    loss_noise = math.sqrt(step_noise**2 / li + rng.uniform(0.002, 0.01) ** 2)

    # Gradient norm: high at init (2-10x), settling in the first 1-10%, often drifting up 1-2.5x
    # late as the LR decays (seen in GPT-2 and OLMo logs); one step's norm, so log-noise 0.08-0.35.
    g_level = loguniform(rng, 0.05, 5.0)
    g_tau = total * rng.uniform(0.01, 0.1)
    grad = g_level * (1 + (rng.uniform(1.5, 10) - 1) * np.exp(-steps / g_tau))
    grad *= 1 + (rng.uniform(1.0, 2.5) - 1) * progress**2
    grad_noise = rng.uniform(0.3, 0.6) if noisy else rng.uniform(0.08, 0.35)

    # Speed: 0.5-40 steps/s (a GPT-2 on MPS at 0.6 to a small MLP), 1-6% jitter, the first row
    # slower (compilation, cudnn autotune, data workers starting).
    speed = np.full(steps.shape, loguniform(rng, 0.5, 40.0))
    speed[0] *= rng.uniform(0.3, 1.0)
    # Process memory 0.4-6 GB, growing 5-30% over the first 1-8% (allocator, caches), then flat.
    rss = loguniform(rng, 400, 6000) * (
        1 + rng.uniform(0.05, 0.3) * (1 - np.exp(-steps / (total * rng.uniform(0.01, 0.08))))
    )
    cuda = loguniform(rng, 2000, 40000) * (1 + 0.05 * (steps > steps[0])) if rng.random() < 0.3 else None

    eval_every, eval_steps = _evals(rng, total, eval_kind)
    gap = 1 + rng.uniform(0.0, 0.06) + rng.uniform(0.0, 0.08) * eval_steps / total
    val = np.minimum.accumulate(np.interp(eval_steps, steps, loss) * gap)

    ratio = None
    if task == "regression":
        # Output spread at init is 20-70% of the target's (small last-layer init), reaching
        # 85-100% in the first 1-8% of the run.
        end, start = rng.uniform(0.85, 1.0), rng.uniform(0.2, 0.7)
        ratio = end - (end - start) * np.exp(-steps / (total * rng.uniform(0.01, 0.08)))
    sample_steps = np.unique(np.linspace(0, total, int(rng.integers(6, 21)))[1:].astype(int) // li * li)
    sample_steps = sample_steps[sample_steps > 0]
    quality = 1 - np.exp(-sample_steps / (total * rng.uniform(0.03, 0.2)))

    probe_every = int(max(li, rng.choice([li, 50, 100, 200])))
    probe_every = min(probe_every, max(li, total // 12 // li * li))
    probe_steps = np.arange(probe_every, total + 1, probe_every)
    names = PARAMS[task]
    param_scales = {n: loguniform(rng, 0.05, 1.0) for n in names}

    keys = keys or str(rng.choice(["all", "all", "some"]))
    some = keys == "some"
    draft = Draft(
        rng=rng,
        program=program,
        task=task,
        schedule=schedule,
        max_steps=total,
        log_interval=li,
        steps=steps,
        lr_peak=peak,
        warmup=warmup,
        lr=lr,
        log_lr=not some or rng.random() < 0.5,
        loss=loss,
        loss_noise=loss_noise,
        grad=grad,
        log_grad=not some and (program == "hf_trainer" or rng.random() < 0.7),
        grad_noise=grad_noise,
        speed=speed,
        log_speed=not some and program in ("script", "lightning") and rng.random() < 0.7,
        speed_noise=rng.uniform(0.01, 0.06),
        rss=rss,
        log_rss=not some and program == "script" and rng.random() < 0.8,
        cuda=None if some else cuda,
        eval_steps=eval_steps,
        val=val,
        val_noise=rng.uniform(0.002, 0.015),
        ratio=None if (ratio is None or some) else ratio,
        ratio_every=int(rng.choice([1, 2, 5])),
        target_std=rng.uniform(0.5, 1.5),
        sample_steps=sample_steps,
        quality=quality,
        punct=np.zeros(sample_steps.shape),
        probe_steps=probe_steps if not some and rng.random() < 0.7 else probe_steps[:0],
        param_scales=param_scales,
        config=None,
        status_kind={"hf_trainer": "api", "script": "api", "lightning": "imported"}.get(program, "none"),
    )
    if program in ("hf_trainer", "lightning"):
        draft.extra["epoch"] = steps / (total / rng.uniform(1, 10))
    kind = config_kind or str(rng.choice(["full", "full", "partial", "none"]))
    draft.config = _config(program, lr, schedule, peak, warmup, total, li, eval_every, sched_info, rng, kind)
    return draft


def _evals(rng, total: int, kind: str | None) -> tuple[int, np.ndarray]:
    """Eval steps: every total/6..total/40 steps, or at irregular steps (epochs of uneven length,
    evals at checkpoint saves) when kind is 'irregular'."""
    n = int(rng.integers(6, 41))
    every = max(1, total // n)
    kind = kind or str(rng.choice(["regular", "regular", "irregular"]))
    if kind == "regular":
        return every, np.arange(every, total + 1, every)
    gaps = every * rng.uniform(0.3, 1.7, size=3 * n)
    steps = np.unique(np.cumsum(gaps).astype(int))
    return every, steps[(steps > 0) & (steps <= total)]
