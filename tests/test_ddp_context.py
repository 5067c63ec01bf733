"""DistContext in one process (a gloo world of one): the collectives work, and teardown leaves no
reference to a process group behind. A group that outlives destroy_process_group is torn down at
interpreter exit, where gloo aborts the process now and then ("terminate called without an active
exception": 7 of 15 runs of a small torchrun script that held one; the same abort failed CI once,
on a torchrun resume that had finished every step)."""

from __future__ import annotations

import gc
import weakref

import torch
import torch.distributed as dist

from trainer.training.ddp import DistContext


def test_teardown_lets_the_process_group_go(tmp_path):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    ctx = DistContext.from_env(env)
    assert ctx.enabled and ctx.world_size == 2
    ctx.world_size = 1  # one process stands in for the world: the same calls, no peer to wait for
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    ctx.init(torch.device("cpu"))
    assert ctx.any(3) == 3 and ctx.gather({"a": 1}) == [{"a": 1}]
    ctx.barrier()
    group = weakref.ref(dist.group.WORLD)
    ctx.teardown()
    gc.collect()
    assert not dist.is_initialized()
    assert group() is None, "a reference to the process group outlived teardown"
