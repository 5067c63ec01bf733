"""The training engine: one loop for every task, streaming everything into runs/<run_id>/.

    from trainer.config import resolve
    from trainer.training.engine import train
    train(resolve("configs/shakespeare_char.yaml"), "runs", "my-run")   # -> "finished"

(`python -m trainer run ...` calls this.) The engine owns the loop, optimizer, schedule, AMP,
EMA, evaluation, checkpoints, logging, the online doctor and DDP; a task (trainer/training/tasks/) owns
data, model, loss and samples.

Exactness of stop/resume on CPU rests on three things: batches come only from `train_gen`
(checkpointed), eval and samples run inside a forked RNG with their own seeds (so they never
move the training stream), and the interval loss sums are checkpointed with everything else.
Step numbers count completed optimizer steps: the row at step 10 is logged after 10 updates,
and a checkpoint at step 10 resumes with update 11.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

from trainer.config import Config
from trainer.config.schedule import lr_at
from trainer.errors import CheckpointError
from trainer.rundir import run_format as rf
from trainer.rundir.disk import disk_full_message, is_disk_full
from trainer.training import memory
from trainer.training.checkpoint import CheckpointWriter, capture_rng, init_weights, load_checkpoint, weights_finite
from trainer.training.ddp import DistContext
from trainer.training.device import amp_dtype, autocast, pick_device
from trainer.training.doctor_hook import DoctorHook
from trainer.training.ema import EMA
from trainer.training.probes import (
    IntervalMeter,
    Mechanism,
    SystemProbe,
    grad_norms,
    snapshot,
    update_ratios,
    weight_norm_tensor,
)
from trainer.training.progress import open_progress
from trainer.training.restore import announce, open_writer, restore
from trainer.training.stopping import EarlyStopping, StopSignals
from trainer.training.tasks import Task, get_task_class
from trainer.training.threads import ThreadShare

MODES = ("new", "resume", "fork")
CHECKPOINT_FORMAT = 1
# last.pt is also written when this long has passed since the last one (checked at log steps):
# checkpoint_interval counts steps, and on a busy machine 500 steps of the default preset took
# 90 s; a crash before the first checkpoint could not be resumed at all.
CHECKPOINT_MAX_AGE_S = 60.0
# Seed offsets keep the eval and sample streams apart from the training stream.
EVAL_SEED_OFFSET, SAMPLE_SEED_OFFSET = 1_000_003, 2_000_003


def build_task(cfg: Config, device: torch.device | None = None, rank: int = 0, world_size: int = 1) -> Task:
    """The configured task, with its data-dependent config checked (ConfigError); writes nothing."""
    if device is None:
        device = pick_device(cfg.device)
    amp_dtype(cfg.amp, device)
    return get_task_class(cfg.task)(cfg, device, rank, world_size)


def check_fits(task: Task, cfg: Config, device: torch.device | None = None) -> int:
    """The model's parameter count; ConfigError, before anything is allocated, when it cannot fit."""
    return memory.check_fits(task, cfg, device if device is not None else pick_device(cfg.device))


def train(
    cfg: Config,
    runs_dir,
    run_id: str,
    *,
    mode: str = "new",
    checkpoint: Path | None = None,
    parent: str | None = None,
    changes: dict[str, tuple] | None = None,
    quiet: bool = False,
) -> str:
    """Train, writing runs/<run_id>/; returns the final state: finished, stopped or failed.

    mode "resume" continues run_id from `checkpoint`; "fork" starts run_id as a new run from
    another run's `checkpoint`, recording `parent`. `changes` ({key: (old, new)}) are the config
    keys that differ from the checkpoint's run; they are logged as a config_change event.
    Rank 0 prints progress and alerts on stdout (trainer.training.progress) unless quiet.
    Bad input (config, device, checkpoint) raises before anything is written.
    """
    signals = StopSignals().install()  # first: a SIGTERM during set-up must not kill us mid-write
    ctx = DistContext.from_env()
    try:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} must be one of {', '.join(MODES)}")
        if mode != "new" and checkpoint is None:
            raise CheckpointError(f"mode {mode!r} needs a checkpoint to start from")
        device = pick_device(cfg.device, ctx.local_rank if ctx.enabled else None)
        amp = amp_dtype(cfg.amp, device)
        threads = ThreadShare(cfg.threads, runs_dir, run_id)  # before the model: building it uses them too
        ctx.init(device)
        task = get_task_class(cfg.task)(cfg, device, ctx.rank, ctx.world_size)
        memory.check_fits(task, cfg, device)  # before the model is allocated, and before anything is written
        state = load_checkpoint(checkpoint) if mode != "new" else None
        # The model is built (and init_from loaded) before the run directory is touched, so a
        # checkpoint that does not fit is refused with nothing written.
        init_from = cfg.init_from if mode == "new" and not task.handles_init_from else ""
        loop = TrainLoop(cfg, task, device, amp, ctx, signals, rf.run_path(runs_dir, run_id), init_from)
        loop.threads = threads
        if ctx.is_main:
            loop.attach(open_writer(cfg, runs_dir, run_id, mode, parent, state))
            loop.progress = open_progress(run_id, cfg.max_steps, quiet)
        result = loop.execute(mode, state, checkpoint, parent, changes or {})
        ctx.barrier()  # the ranks tear down together: none closes its connections while another still writes
        return result
    finally:
        signals.restore()
        ctx.teardown()


def _optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    # Weight decay on matrices and embeddings only, not on gains and biases (as nanoGPT).
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused only on CUDA; passing fused=False elsewhere is not free either (it imports dynamo).
    extra = {"fused": True} if device.type == "cuda" else {}
    # No lr here: _train_step sets every group's lr from the schedule (lr_at) before each step.
    return torch.optim.AdamW(groups, betas=(cfg.beta1, cfg.beta2), **extra)


class TrainLoop:
    def __init__(self, cfg, task, device, amp, ctx: DistContext, signals, run_dir: Path, init_from: str = ""):
        self.cfg, self.task, self.device, self.amp, self.ctx = cfg, task, device, amp, ctx
        self.writer, self.signals = None, signals  # the writer comes with attach (rank 0)
        self.threads: ThreadShare | None = None  # train() sets it
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.raw = task.build_model().to(device)
        # init_from's weights before DDP (which broadcasts rank 0's) and EMA (whose shadow copies them)
        self.init_step = init_weights(self.raw, init_from) if init_from else None
        self.named_params = list(self.raw.named_parameters())
        self.model = self.raw
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.raw, device_ids=ids)
        self.optimizer = _optimizer(self.raw, cfg, device)
        self.mechanism = Mechanism(self.named_params, self.raw, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        self.ema = EMA(self.raw, cfg.ema) if cfg.ema > 0 else None
        torch.manual_seed(cfg.seed + ctx.rank)  # dropout and task noise differ per rank
        self.train_gen = torch.Generator().manual_seed(cfg.seed + ctx.rank)
        self.meter = IntervalMeter(device)
        self.early = EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta)
        self.run_dir = run_dir
        self.ckpts: CheckpointWriter | None = None  # with the writer (rank 0 only), see attach
        self.doctor: DoctorHook | None = None  # made after the start event, so that event comes first
        self.progress, self._row = None, {}  # rank 0's terminal output (train() sets it) and last row
        self.system = SystemProbe(device)
        self.step = 0
        self.lr = lr_at(0, cfg)
        self.last_checkpoint_step: int | None = None  # last.pt attempted (all ranks)
        self.last_checkpoint_time = time.monotonic()  # of that attempt, or of the start (rank 0 decides)
        self.healthy_step: int | None = None  # last.pt actually written (finite weights)
        self.loaded_world = ctx.world_size  # processes that wrote the loaded checkpoint
        self.units_per_step = task.units_per_batch() * cfg.grad_accum_steps * ctx.world_size
        self.throughput_key = rf.THROUGHPUT[task.unit]

    def attach(self, writer) -> None:
        """Give the loop its run directory (rank 0), once everything that can be refused was checked."""
        self.writer = writer
        self.ckpts = CheckpointWriter(self.run_dir / rf.CHECKPOINT_DIR, self.cfg.keep_checkpoints)

    # --- the run ---------------------------------------------------------------------------
    def execute(self, mode, state, checkpoint, parent, changes) -> str:
        try:
            if state is not None:
                self.loaded_world = restore(self, state, mode)
            announce(self, mode, checkpoint, parent, changes)
            if mode != "resume" and self.writer is not None:
                self.mechanism.take_initial()  # the "fell from" reference of the remedies' evidence
            if self.writer is not None:
                history = self.run_dir if mode == "resume" else None
                restart = self.step if mode != "new" else None
                on_alert = self.progress.alert if self.progress is not None else None
                self.doctor = DoctorHook(self.cfg, self.writer, history, restart, on_alert)
            return self._loop()
        except (Exception, KeyboardInterrupt) as e:
            tb = traceback.format_exc()
            self._close_progress()  # the traceback goes below the bar, not into it
            print(tb, file=sys.stderr, flush=True)
            if self.writer is not None:
                error = f"{type(e).__name__}: {e}"
                if is_disk_full(e):
                    message = disk_full_message(self.run_dir, e.filename)
                else:
                    message = f"{error} (see the error event)"
                self.writer.fail(message, tb, step=self.step, error=error)
            return rf.FAILED
        finally:
            self._close_progress()

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def _loop(self) -> str:
        self._status(rf.RUNNING)
        self._interval_start, self._interval_step, self._paused = time.perf_counter(), self.step, 0.0
        reason = None
        while self.step < self.cfg.max_steps:
            self._train_step()
            self.step += 1
            self._after_step()
            reason = self._stop_reason()
            if reason:
                break
        if reason and reason != "early stopping":
            self._status(rf.STOPPING)
            self._checkpoint(why=f"stop ({reason})")
            return self._end(rf.STOPPED, "stop", f"stopped at step {self.step}: {reason}")
        if self.last_checkpoint_step != self.step:
            self._checkpoint(why="end of training")
        why = reason or f"reached max_steps {self.cfg.max_steps}"
        return self._end(rf.FINISHED, "finish", f"finished at step {self.step}: {why}")

    def _end(self, state: str, event: str, message: str) -> str:
        if self.writer is not None:
            self.writer.event(event, message, step=self.step)
            self._status(state)
            self.writer.finish(state, message)
        return state

    # --- one optimizer step ----------------------------------------------------------------
    def _train_step(self) -> None:
        cfg = self.cfg
        self.lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        accum = cfg.grad_accum_steps
        for micro in range(accum):
            batch = self.task.get_batch("train", self.train_gen)
            if self.ctx.enabled:
                # Reduce gradients over ranks only on the last micro-batch (nanoGPT's toggle,
                # cheaper than a no_sync() context per micro-step).
                self.model.require_backward_grad_sync = micro == accum - 1
            with autocast(self.device, self.amp):
                out = self.task.compute_loss(self.model, batch, self.step)
            loss = out.loss / accum
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            self.meter.add(rf.TRAIN_LOSS, loss)
            for name, value in out.parts.items():
                self.meter.add(f"loss/{name}", value / accum)
            for name, value in out.probes.items():
                self.meter.add(name, value / accum)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        probing = self.writer is not None and (self.step + 1) % cfg.probe_interval == 0
        if probing:
            norms, before = grad_norms(self.named_params), snapshot(self.named_params)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf  # inf: measure, do not clip
        self.meter.add(rf.GRAD_NORM, nn.utils.clip_grad_norm_(self.raw.parameters(), max_norm))
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.raw)
        self.meter.step_done()
        if probing:
            ratios = update_ratios(self.named_params, before)
            extra = self.mechanism.fields(weight_norm_tensor(self.named_params).tolist(), self.optimizer)
            extra[rf.EFFECTIVE_BATCH] = cfg.batch_size * cfg.grad_accum_steps * self.ctx.world_size
            self.writer.log_grads(self.step + 1, norms, ratios, extra)
            self.doctor.observe("grads", {"step": self.step + 1, "norms": norms, "update_ratios": ratios, **extra})

    def _after_step(self) -> None:
        cfg, s = self.cfg, self.step
        final = s == cfg.max_steps
        logged = s % cfg.log_interval == 0 or final
        if logged:
            self._log_row()
            self._recheck_threads()
        if s % cfg.eval_interval == 0 or final:
            self._paused_for(self._evaluate)
        if self.writer is not None and (s % cfg.sample_interval == 0 or final):
            self._paused_for(self._sample)
        if s % cfg.checkpoint_interval == 0:
            self._paused_for(lambda: self._checkpoint(periodic=True, why="checkpoint_interval"))
        elif logged and not final and self._checkpoint_is_old():
            self._paused_for(lambda: self._checkpoint(why=f"{CHECKPOINT_MAX_AGE_S:g} s since the last one"))
        if logged and self.progress is not None:
            self.progress.update(s, self._row)  # after the eval, so its val loss shows at this step

    def _stop_reason(self) -> str | None:
        code = 0
        if self.signals.requested:
            code = 2
        elif self.writer is not None and self.writer.stop_requested():
            code = 1
        if self.doctor is not None and self.doctor.stop_requested:
            code = 3
        code = self.ctx.any(code)  # rank 0's decision (or any rank's signal) stops every rank
        if code:
            return {
                1: "control/stop file",
                2: f"signal {self.signals.requested or 'on another rank'}",
                3: f"doctor: {self.doctor.stop_requested if self.doctor else 'alert on rank 0'}",
            }[code]
        return "early stopping" if self.early.should_stop else None

    # --- logging -----------------------------------------------------------------------------
    def _log_row(self) -> None:
        values = self.meter.means(self.ctx.mean_ if self.ctx.enabled else None)
        if self.writer is None:
            return
        now = time.perf_counter()
        elapsed = max(now - self._interval_start - self._paused, 1e-9)
        steps_per_s = (self.step - self._interval_step) / elapsed
        self._interval_start, self._interval_step, self._paused = now, self.step, 0.0
        row = {
            rf.LR: self.lr,
            **values,
            rf.STEPS_PER_S: steps_per_s,
            self.throughput_key: steps_per_s * self.units_per_step,
        }
        row.update(self.system.read())
        difficulty = self.task.difficulty(self.step)
        if difficulty is not None:
            row[rf.CURRICULUM_DIFFICULTY] = difficulty
        # the doctor sees the row as written, its time included: the slowdown alert names the runs
        # of ours that were live since its baseline's time (trainer.doctor.neighbours)
        written = time.time()
        self.writer.log(self.step, row, written)
        self._row = row
        self.writer.set_status(step=self.step)
        self.doctor.observe("metrics", {"step": self.step, rf.TIME: written, **row})

    def _recheck_threads(self) -> None:
        """threads: auto takes its share of the cores again (ThreadShare.recheck: every few seconds)."""
        if self.threads is not None and self.threads.recheck() and self.writer is not None:
            self.writer.set_status(**self.threads.status_fields(), write=False)  # the heartbeat writes it

    def _paused_for(self, fn) -> None:
        """Run fn and leave its time out of speed/steps_per_s (it is not training)."""
        start = time.perf_counter()
        fn()
        self._paused += time.perf_counter() - start

    def _eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.raw

    @torch.no_grad()
    def _evaluate(self) -> None:
        model, cfg = self._eval_model(), self.cfg
        was_training = model.training
        model.eval()
        n_batches = math.ceil(cfg.eval_steps / self.ctx.world_size)
        # The same val batches at every eval (comparable numbers), drawn away from the train stream.
        gen = torch.Generator().manual_seed(cfg.seed + EVAL_SEED_OFFSET + self.ctx.rank)
        total = torch.zeros((), device=self.device)
        with _forked_rng(self.device, cfg.seed + EVAL_SEED_OFFSET + self.ctx.rank):
            for _ in range(n_batches):
                # A run forked beside this one during an eval took a core, and two OpenMP threads on the
                # one left waited for each other at every op: the eval at step 750 of the default run
                # then ran 45 s and more instead of ~2, until the next logged step looked again.
                self._recheck_threads()
                batch = self.task.get_batch("val", gen)
                with autocast(self.device, self.amp):
                    total += self.task.compute_loss(model, batch, self.step).loss.float()
        model.train(was_training)
        val_loss = float(self.ctx.mean_(total / n_batches).item())
        is_best = self.early.observe(val_loss)
        if self.writer is not None:
            written = time.time()
            self.writer.log(self.step, {rf.VAL_LOSS: val_loss}, written)
            self.writer.set_status(**{rf.STATUS_BEST_VAL_LOSS: self.early.best})
            self.doctor.observe("metrics", {"step": self.step, rf.TIME: written, rf.VAL_LOSS: val_loss})
            if self.progress is not None:
                self.progress.val_loss = val_loss
        if is_best:
            self._checkpoint(last=False, best=True, why=f"best val/loss {val_loss:.4f}")

    @torch.no_grad()
    def _sample(self) -> None:
        model = self._eval_model()
        if not weights_finite(model):
            return  # nothing sensible to sample; the non-finite metrics already say why
        was_training = model.training
        model.eval()
        gen = torch.Generator().manual_seed(self.cfg.seed + SAMPLE_SEED_OFFSET + self.step)
        with _forked_rng(self.device, self.cfg.seed + SAMPLE_SEED_OFFSET + self.step):
            sample = self.task.sample(model, self.step, gen)
        model.train(was_training)
        self.writer.log_sample(self.step, **sample)
        self.doctor.observe("samples", {"step": self.step, **sample})

    def _status(self, state: str) -> None:
        if self.writer is not None:
            self.writer.set_status(
                state,
                step=self.step,
                task=self.cfg.task,
                max_steps=self.cfg.max_steps,
                device=str(self.device),
                **{rf.STATUS_BEST_VAL_LOSS: self.early.best},
                **(self.threads.status_fields() if self.threads else {rf.STATUS_THREADS: torch.get_num_threads()}),
            )

    # --- checkpoints ---------------------------------------------------------------------------
    def _checkpoint_is_old(self) -> bool:
        """rank 0's clock decides for every rank (a checkpoint gathers from all of them); asked at
        log steps only, which every rank reaches together."""
        old = self.writer is not None and time.monotonic() - self.last_checkpoint_time >= CHECKPOINT_MAX_AGE_S
        return bool(self.ctx.any(int(old)))

    def _checkpoint(self, *, last: bool = True, best: bool = False, periodic: bool = False, why: str = "") -> None:
        # Every rank's RNG, data position and interval sums, so a DDP resume is exact per rank.
        per_rank = self.ctx.gather(
            {"rng": capture_rng(), "train_gen": self.train_gen.get_state(), "meter": self.meter.state_dict()}
        )
        if last:  # decided alike on every rank, so all ranks take part in the same gathers
            self.last_checkpoint_step = self.step
            self.last_checkpoint_time = time.monotonic()
        if self.writer is None:
            return
        if not weights_finite(self.raw):
            kept = self.healthy_step
            self.writer.event(
                "checkpoint",
                f"checkpoint not written: the weights are not finite; kept the last healthy checkpoint (step {kept})"
                if kept is not None
                else "checkpoint not written: the weights are not finite",
                step=self.step,
                files=[],
            )
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.raw.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "per_rank": per_rank,
            "early_stopping": self.early.state_dict(),
            "config": self.cfg.to_dict(),
            "run_id": self.writer.run_id,
        }
        # The rows up to this step go to disk first: a checkpoint whose rows were lost in a crash
        # would resume past steps that are logged nowhere.
        self.writer.flush(durable=True)
        names = self.ckpts.write(state, self.step, last=last, best=best, periodic=periodic)
        if last:
            self.healthy_step = self.step
        self.writer.event("checkpoint", f"wrote {', '.join(names)} ({why})", step=self.step, files=names)


@contextlib.contextmanager
def _forked_rng(device: torch.device, seed: int):
    """torch's global RNG seeded for eval or sampling, and put back as it was afterwards."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
