"""Starting a TrainLoop from a checkpoint: the writer cut back to it, the state put back, and the
events that tell readers where the run came from (start, resume, fork, config_change).

Kept apart from the loop itself: this runs once, before the first step.
"""

from __future__ import annotations

import torch

from trainer.config import Config
from trainer.rundir import run_format as rf
from trainer.rundir.status import read_status
from trainer.rundir.writer import open_run
from trainer.training.checkpoint import load_weights, restore_rng
from trainer.training.stopping import EarlyStopping


def open_writer(cfg: Config, runs_dir, run_id: str, mode: str, parent: str | None, state: dict | None):
    """The run's writer: a new directory, or for a resume the old one cut back to the checkpoint."""
    if mode == "resume":
        parent = (read_status(rf.run_path(runs_dir, run_id)) or {}).get("parent")
        return open_run(runs_dir, run_id, cfg.to_dict(), parent=parent, resume_step=int(state["step"]))
    return open_run(runs_dir, run_id, cfg.to_dict(), parent=parent if mode == "fork" else None)


def restore(loop, state: dict, mode: str) -> int:
    """Put a checkpoint into a fresh TrainLoop; returns how many processes wrote it."""
    load_weights(
        loop.raw,
        state,
        "the checkpoint's weights",
        "keep the model shape keys (task, model.*, block_size) as they were",
    )
    loop.optimizer.load_state_dict(state["optimizer"])
    # The new config wins over the checkpoint's optimizer settings (lr follows the schedule).
    loop.optimizer.param_groups[0]["weight_decay"] = loop.cfg.weight_decay
    for group in loop.optimizer.param_groups:
        group["betas"] = (loop.cfg.beta1, loop.cfg.beta2)
    if loop.scaler is not None and state.get("scaler"):
        loop.scaler.load_state_dict(state["scaler"])
    if loop.ema is not None:
        loop.ema.load_state_dict(state["ema"] if state.get("ema") else loop.raw.state_dict())
    loop.step = int(state["step"])
    loop.last_checkpoint_step = loop.healthy_step = loop.step
    per_rank = state.get("per_rank") or []
    if len(per_rank) == loop.ctx.world_size:
        mine = per_rank[loop.ctx.rank]
        restore_rng(mine["rng"])
        loop.train_gen.set_state(mine["train_gen"])
        loop.meter.load_state_dict(mine["meter"])
    else:  # a different number of processes: fresh streams, still reproducible
        torch.manual_seed(loop.cfg.seed + loop.ctx.rank + loop.step)
        loop.train_gen.manual_seed(loop.cfg.seed + loop.ctx.rank + loop.step)
    if mode == "resume":
        loop.early = EarlyStopping(
            loop.cfg.early_stopping.patience, loop.cfg.early_stopping.min_delta, state.get("early_stopping")
        )
    return len(per_rank)


def announce(loop, mode: str, checkpoint, parent, changes) -> None:
    """The start, resume or fork event, and a config_change event for changed keys."""
    if loop.writer is None:
        return
    n_params = sum(p.numel() for p in loop.raw.parameters())
    info = {"device": str(loop.device), "world_size": loop.ctx.world_size, "params": n_params}
    if mode == "new":
        msg = f"training {loop.cfg.task} ({n_params:,} parameters) for {loop.cfg.max_steps} steps on {loop.device}"
        if loop.init_step is not None:
            msg += f", from the weights of {loop.cfg.init_from} (step {loop.init_step})"
            info["init_from"] = loop.cfg.init_from
        loop.writer.event("start", msg, step=0, **info)
    else:
        where = f"from {parent} " if mode == "fork" else ""
        msg = f"{mode} {where}at step {loop.step} ({checkpoint})"
        if loop.loaded_world != loop.ctx.world_size:
            msg += f"; the checkpoint was written by {loop.loaded_world} processes, so data streams start afresh"
        loop.writer.event(mode, msg, step=loop.step, checkpoint=str(checkpoint), parent=parent, **info)
    if changes:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
        loop.writer.event(
            "config_change", f"changed {listed}", step=loop.step, changes={k: list(v) for k, v in changes.items()}
        )
