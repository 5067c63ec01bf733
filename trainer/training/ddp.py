"""Distributed data parallel under torchrun: process group set-up and the few collectives the
engine needs. One process per device; rank 0 alone writes the run directory.

    torchrun --standalone --nproc_per_node=2 -m trainer run --config configs/shakespeare_char.yaml
    # two machines: on each, torchrun --nnodes=2 --node_rank=K --rdzv_backend=c10d \
    #     --rdzv_endpoint=HOST0:29500 --nproc_per_node=G -m trainer run ...

Without WORLD_SIZE in the environment (a plain `python -m trainer run`) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False
    # A gloo group for control messages (stop flags, checkpoint states), so deciding to stop
    # costs a tiny CPU all-reduce even when the gradients go through NCCL.
    _control: object = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, environ=None) -> DistContext:
        env = os.environ if environ is None else environ
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")), enabled=True)

    def init(self, device: torch.device) -> None:
        if not self.enabled:
            return
        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        self._control = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def release(self) -> None:
        """Drop our reference to the control group, which must go before destroy_process_group: a
        group that outlives it is torn down at interpreter exit, where gloo now and then aborts the
        process ("terminate called without an active exception": 7 of 15 runs of a small torchrun
        script holding one)."""
        self._control = None

    def teardown(self) -> None:
        self.release()
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # --- collectives (all no-ops on a single process) -----------------------------------------
    def any(self, flag: int) -> int:
        """The largest flag over all ranks (0 = nothing; rank 0's stop decision reaches all)."""
        if not self.enabled:
            return flag
        t = torch.tensor([flag], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._control)
        return int(t.item())

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average tensor over ranks, in place (on the training device's backend)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    def gather(self, obj) -> list:
        """Every rank's obj, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._control)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self._control)
