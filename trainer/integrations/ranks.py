"""The callbacks under torch.distributed (torchrun, accelerate launch): the library calls them on
every process, and one run directory takes one writer.

Rank 0 alone opens and writes the run: a second process opening the same run is refused (RunBusy),
and before this every rank tried, so a DDP job with a fixed run id failed at its first step. A stop
asked on rank 0 (the dashboard's Stop, `python -m trainer stop`, a stopping alert) reaches every
rank at the same step, as in our trainer (trainer/training/ddp.py): a rank that stopped alone would
leave the others waiting in their next gradient all-reduce.

    ranks = Ranks.of_this_process()          # at train begin, on every rank (it may make a group)
    run = init(...) if ranks.is_main else None
    if ranks.any(run is not None and run.should_stop()):   # on every rank, at the same steps
        stop()

Without a process group of more than one process (one GPU, a CPU, a notebook) it is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainer.training.ddp import DistContext


@dataclass
class Ranks:
    ctx: DistContext

    @classmethod
    def alone(cls) -> Ranks:
        """One process: every rank is the main one and nothing is sent (before train begins)."""
        return cls(DistContext())

    @classmethod
    def of_this_process(cls) -> Ranks:
        """The process group the library set up (not one of ours); on each rank, at the same point,
        since the stop flags' gloo group is made with a collective where the gradients go through NCCL."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
            return cls.alone()
        ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), enabled=True)
        ctx.init(torch.device("cpu"))  # the group exists: this only makes the control group
        return cls(ctx)

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank's flag is (a tiny CPU all-reduce; the flag itself on one)."""
        return bool(self.ctx.any(int(flag)))

    def close(self) -> None:
        """Drop the control group before the library destroys its process group (see DistContext.teardown)."""
        self.ctx.release()
