"""What the engine measures besides the loss, cheaply.

- IntervalMeter: per-step tensors summed on the device and read once per log interval, so a
  training step never waits for the GPU just to log.
- grad_norms / update_ratios / mechanism: the grads.jsonl record, taken only at probe_interval: what
  the doctor's remedies reason from (weight and embedding norms, the per-step decay lr x weight_decay).
- SystemProbe: the trainer process's memory and CPU (psutil) and accelerator memory.
"""

from __future__ import annotations

import time

import psutil
import torch
from torch import nn

from trainer.rundir import host_load
from trainer.rundir import run_format as rf
from trainer.training.device import memory_mb


class IntervalMeter:
    """Sums of named per-step values over the current log interval, kept on the device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        total = self.sums.get(name)
        self.sums[name] = value.clone() if total is None else total.add_(value)

    def step_done(self) -> None:
        self.count += 1

    def means(self, reduce_mean=None) -> dict[str, float]:
        """Interval means (one device sync), averaged over DDP ranks by reduce_mean; then reset."""
        names = sorted(self.sums)
        if not names or self.count == 0:
            self.reset()
            return {}
        stacked = torch.stack([self.sums[n].reshape(()) for n in names]) / self.count
        if reduce_mean is not None:
            reduce_mean(stacked)
        values = dict(zip(names, stacked.tolist()))
        self.reset()
        pred, target = values.get(rf.PRED_STD), values.get(rf.TARGET_STD)
        if pred is not None and target is not None and target > 0:
            # The ratio of standard deviations (docs/run-format.md), the figure report 001 quotes
            # (1:30): 1 when predictions vary as much as the targets, near 0 when they collapse.
            values[rf.VARIANCE_RATIO] = pred / target
        return values

    def reset(self) -> None:
        self.sums, self.count = {}, 0

    def state_dict(self) -> dict:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.count = state["count"]


def grad_norm_tensor(named_params: list[tuple[str, nn.Parameter]]) -> torch.Tensor:
    """L2 norm of each parameter's gradient, stacked on the device (no sync); 0 without a gradient."""
    norms = [
        p.grad.detach().float().norm() if p.grad is not None else torch.zeros((), device=p.device)
        for _, p in named_params
    ]
    return torch.stack(norms) if norms else torch.zeros(0)


def grad_norms(named_params: list[tuple[str, nn.Parameter]]) -> dict[str, float]:
    """L2 norm of each parameter's gradient; a parameter without a gradient reports 0.0."""
    return dict(zip((n for n, _ in named_params), grad_norm_tensor(named_params).tolist()))


def snapshot(named_params: list[tuple[str, nn.Parameter]]) -> list[torch.Tensor]:
    return [p.detach().clone() for _, p in named_params]


def update_ratio_tensor(named_params: list[tuple[str, nn.Parameter]], before: list[torch.Tensor]) -> torch.Tensor:
    """|w_after - w_before| / |w_before| per parameter for the optimizer step just taken, stacked (no sync)."""
    ratios = [
        (p.detach().float() - w.float()).norm() / w.float().norm().clamp_min(1e-12)
        for (_, p), w in zip(named_params, before)
    ]
    return torch.stack(ratios) if ratios else torch.zeros(0)


def update_ratios(named_params: list[tuple[str, nn.Parameter]], before: list[torch.Tensor]) -> dict[str, float]:
    """|w_after - w_before| / |w_before| per parameter for the optimizer step just taken."""
    return dict(zip((n for n, _ in named_params), update_ratio_tensor(named_params, before).tolist()))


def embedding_names(model: nn.Module) -> set[str]:
    """Names (as in named_parameters) of the weights of the model's nn.Embedding tables."""
    return {
        f"{prefix}.weight" if prefix else "weight" for prefix, m in model.named_modules() if isinstance(m, nn.Embedding)
    }


def decay_per_step(optimizer) -> tuple[float, float]:
    """(lr, the share of each weight removed per step by decoupled weight decay: lr x weight_decay).

    AdamW-style optimizers shrink every decayed weight by that share on each step whatever the
    gradient says; it is what pins weights near zero when it outweighs the updates. An optimizer
    whose weight_decay is an L2 term in the gradient (Adam, SGD) reports 0: it has no fixed shrink.
    """
    lr = decay = 0.0
    for group in optimizer.param_groups:
        group_lr = float(group.get("lr", 0.0))
        lr = max(lr, group_lr)
        if _decoupled(optimizer, group):
            decay = max(decay, group_lr * float(group.get("weight_decay", 0.0) or 0.0))
    return lr, decay


def _decoupled(optimizer, group) -> bool:
    return isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay"))


def decayed_names(named_params: list[tuple[str, nn.Parameter]], optimizer) -> set[str]:
    """Names of the parameters the optimizer shrinks by decoupled weight decay (weight_decay > 0)."""
    ids = {
        id(p)
        for group in optimizer.param_groups
        if _decoupled(optimizer, group) and (group.get("weight_decay") or 0) > 0
        for p in group["params"]
    }
    return {n for n, p in named_params if id(p) in ids}


def weight_norm_tensor(named_params: list[tuple[str, nn.Parameter]]) -> torch.Tensor:
    """L2 norm of each parameter, stacked on the device (no sync)."""
    with torch.no_grad():
        norms = [p.detach().float().norm() for _, p in named_params]
    return torch.stack(norms) if norms else torch.zeros(0)


def _joint(weights: dict[str, float], names: set[str]) -> float | None:
    table = [weights[n] for n in names if n in weights]
    return sum(v * v for v in table) ** 0.5 if table else None


class Mechanism:
    """The grads.jsonl fields beside the gradient norms, for one model (the engine's and run.watch's;
    docs/run-format.md): each weight's L2 norm, the joint norms of the embedding tables and of the
    weights under decoupled decay when there are any, the step's lr and per-step decay, and in the
    first record the norms as they were before the first step (rf.INITIAL, the "fell from" reference)."""

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], model: nn.Module, optimizer=None):
        self.named = named_params
        self.names = [n for n, _ in named_params]
        self.embeddings = embedding_names(model)
        self.decayed = decayed_names(named_params, optimizer) if optimizer is not None else set()
        self.initial: dict | None = None

    def take_initial(self) -> None:
        """Note the joint norms as they are now (one device sync); the next record carries them."""
        fields = self.fields(weight_norm_tensor(self.named).tolist())
        self.initial = {k: fields[k] for k in (rf.EMBEDDING_NORM, rf.DECAYED_NORM) if k in fields}

    def fields(self, weight_norms: list[float], optimizer=None) -> dict:
        """The record's fields from the weight norms (weight_norm_tensor, as numbers) and the optimizer."""
        weights = dict(zip(self.names, weight_norms))
        out: dict = {rf.WEIGHT_NORMS: weights}
        if optimizer is not None:
            self.decayed = self.decayed or decayed_names(self.named, optimizer)
            out[rf.PROBE_LR], out[rf.DECAY_PER_STEP] = decay_per_step(optimizer)
        for key, group in ((rf.EMBEDDING_NORM, self.embeddings), (rf.DECAYED_NORM, self.decayed)):
            joint = _joint(weights, group)
            if joint is not None:
                out[key] = joint
        if self.initial:
            out[rf.INITIAL], self.initial = self.initial, None
        return out


# The shortest window sys/other_cpu and sys/cpu_wait are measured over: CPU time ticks in 10 ms steps.
SHARING_WINDOW_S = 0.05


class SystemProbe:
    """sys/* series of the trainer process."""

    def __init__(self, device: torch.device, children: bool = False):
        self.device = device
        self.children = children  # count this process's children as its own (a script's data workers)
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the measurement
        self.cores = psutil.cpu_count() or 1
        self._times = self._cpu_times()

    def read(self) -> dict[str, float]:
        row = {
            rf.RSS_MB: self.process.memory_info().rss / 2.0**20,
            rf.CPU_PERCENT: self.process.cpu_percent(None),
        }
        row.update(self._sharing())
        row.update(memory_mb(self.device))
        return row

    def _cpu_times(self) -> tuple[float, float, float, float | None]:
        """(wall time, host CPU seconds busy, this process's CPU seconds, the seconds its threads
        waited for a core): /proc/stat, /proc/self/stat and a schedstat per thread (~0.1 ms)."""
        mine = host_load.cpu_seconds(self.process) or 0.0
        if self.children:  # for a reader off the training thread (run.log's drain, once a second)
            mine += sum(host_load.cpu_seconds(child) or 0.0 for child in host_load.descendants(self.process))
        return time.monotonic(), host_load.host_busy_seconds(), mine, host_load.waiting_seconds()

    def _sharing(self) -> dict[str, float]:
        """sys/other_cpu (cores other processes kept busy) and sys/cpu_wait (seconds a second this
        process's threads waited for a core) since the window began; nothing for a row that comes
        under SHARING_WINDOW_S after it: the window runs on to a later row, and nothing is read now
        (a schedstat per thread costs ~0.1 ms, a lot beside a row a step of a fast run)."""
        if time.monotonic() - self._times[0] < SHARING_WINDOW_S:
            return {}
        then, self._times = self._times, self._cpu_times()
        wall = self._times[0] - then[0]
        host_s, mine_s = self._times[1] - then[1], self._times[2] - then[2]
        out = {rf.OTHER_CPU: round(host_load.other_busy_cores(host_s, mine_s, wall, self.cores), 3)}
        if self._times[3] is not None and then[3] is not None:
            out[rf.CPU_WAIT] = round(max(0.0, self._times[3] - then[3]) / wall, 4)
        return out
