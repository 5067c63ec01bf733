"""run.watch(model): per-parameter gradient norms and update ratios of your own loop, for grads.jsonl.

    run.watch(model, every=100)   # then train as before: nothing else in the loop changes

How, without touching your loop: PyTorch's global optimizer step hooks
(torch.optim.optimizer.register_optimizer_step_pre_hook / _post_hook) run around every
`optimizer.step()`. Before the step of an optimizer that holds the model's parameters, the
gradients are final (accumulated, unscaled by GradScaler, clipped), so every `every`-th step we take
each parameter's gradient norm and a copy of the weights; after the step, |w_after - w_before| /
|w_before|, each weight's norm (and the embedding tables'), and the optimizer's lr and per-step decay
lr x weight_decay: what the doctor's remedies reason from. Both stay tensors on the device: the run's background thread turns them into numbers,
so a probe step never waits for the GPU.

A parameter that gets no gradient (not on the forward path) reports a norm of exactly 0, which is
what the doctor's dead_parameters detector looks for. Rows are numbered by the optimizer steps
taken since watch() (1, 2, ...). A loop that updates weights by hand, with no torch.optim
optimizer, produces no rows (finish() says so).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from trainer.rundir import run_format as rf
from trainer.training.probes import Mechanism, grad_norm_tensor, snapshot, update_ratio_tensor, weight_norm_tensor

# emit(step, names, norms, update_ratios, weights, fields): norms, ratios and weights (each
# parameter's L2 norm after the step) are 1-d tensors, one entry per name; fields(weight norms as
# numbers) gives the record's mechanism fields (probes.Mechanism), called off the training thread.
Emit = Callable[[int, list[str], torch.Tensor, torch.Tensor, torch.Tensor, Callable[[list[float]], dict]], None]


class GradWatch:
    """Probes one model's parameters every `every` optimizer steps and hands the tensors to emit."""

    def __init__(self, model: nn.Module, every: int, emit: Emit):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"watch(every={every!r}): give a whole number of optimizer steps, at least 1")
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not self.named:
            raise ValueError("watch(model): the model has no parameters that require a gradient")
        self.names = [n for n, _ in self.named]
        self.mechanism = Mechanism(self.named, model)
        self.mechanism.take_initial()
        self.every = every
        self.emit = emit
        self.steps = 0  # optimizer steps taken over these parameters since watch()
        self._ids = {id(p) for _, p in self.named}
        self._covers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> holds ours?
        self._before: list[torch.Tensor] | None = None
        self._norms: torch.Tensor | None = None
        self._handles = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _holds_ours(self, optimizer) -> bool:
        covers = self._covers.get(optimizer)
        if covers is None:
            covers = any(id(p) in self._ids for group in optimizer.param_groups for p in group["params"])
            self._covers[optimizer] = covers
        return covers

    def _pre(self, optimizer, args, kwargs) -> None:
        if not self._holds_ours(optimizer):
            return
        self.steps += 1
        if self.steps % self.every == 0:
            with torch.no_grad():
                self._norms = grad_norm_tensor(self.named)
                self._before = snapshot(self.named)

    def _post(self, optimizer, args, kwargs) -> None:
        if self._before is None or not self._holds_ours(optimizer):
            return
        with torch.no_grad():
            ratios = update_ratio_tensor(self.named, self._before)
            weights = weight_norm_tensor(self.named)
        norms, self._norms, self._before = self._norms, None, None
        fields = self.mechanism.fields([], optimizer)  # lr, decay and the initial norms, as of this step
        fields.pop(rf.WEIGHT_NORMS)

        def with_weights(weight_norms: list[float]) -> dict:
            return {**self.mechanism.fields(weight_norms), **fields}

        self.emit(self.steps, self.names, norms, ratios, weights, with_weights)
