"""A Lightning Trainer watched by the training doctor: one callback (docs/logging-api.md).

    from trainer.integrations.lightning import DoctorCallback

    trainer = lightning.pytorch.Trainer(max_steps=1000, callbacks=[DoctorCallback(run_id="mlp-1")])
    trainer.fit(module, train_loader, val_loader)             # runs/mlp-1/, as trainer.init

    python examples/lightning_mlp.py                          # a runnable example

A Callback rather than a Logger: a Logger sees only the metrics the module logs, while the doctor
also needs the model (run.watch), a place to stop (trainer.should_stop), the failure
(on_exception) and the end; a Callback has all of these and leaves the user's logger
(TensorBoard, CSV, or logger=False) as it is.

What it does, hook by hook:
1) on_train_start: trainer.init(run_id, runs_dir, config), config defaulting to the module's
   hparams plus the Trainer's max_steps, max_epochs, accumulation, clipping and precision; then
   run.watch(module).
2) on_before_optimizer_step: on a logging step, the total gradient norm (after AMP unscaling,
   before clipping, as the HF Trainer reports it), kept as a tensor: no GPU sync.
3) on_train_batch_end: every `log_every` optimizer steps, the loss training_step returned, the
   first optimizer's lr, the gradient norm and the epoch under our names; then run.should_stop()
   (the dashboard's Stop, `python -m trainer stop`, a stopping alert) sets trainer.should_stop.
4) on_validation_end: the module's logged val_loss (or val/loss) as val/loss, other val* metrics
   under their own names (the sanity check's are skipped).
5) on_train_end: the last step's row where it was not a logging step, then run.finish(), stopped
   if a stop was asked, else finished; on_exception: run.fail(), failed (a Ctrl-C stopped).
Under torchrun or a multi-device strategy (several processes): rank 0 alone opens and writes the
run, and a stop asked there ends every rank after the same batch (trainer/integrations/ranks.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from lightning.pytorch import Callback

from trainer.api import Run, init
from trainer.integrations.plain import plain
from trainer.integrations.ranks import Ranks
from trainer.rundir import run_format as rf
from trainer.training.probes import grad_norm_tensor

VAL_LOSS_NAMES = ("val_loss", "val/loss")  # what a module's self.log(...) calls its validation loss


class DoctorCallback(Callback):
    """Opens a run on train start, logs loss, lr, gradient norm and val loss, stops on request, ends it.

    run_id, runs_dir: as trainer.init (None: <script>-<date>-<time> under $TRAINER_RUNS_DIR or ./runs).
    config: config.yaml's dict; None: the module's hparams plus the Trainer's step settings.
    log_every: optimizer steps between metrics rows; None: the Trainer's log_every_n_steps.
    watch_every: optimizer steps between gradient-norm rows (run.watch); None: log_every.
    init_kwargs: passed on to trainer.init (doctor, on_critical, stop_on).
    """

    def __init__(
        self,
        run_id: str | None = None,
        runs_dir: str | Path | None = None,
        config: dict | None = None,
        log_every: int | None = None,
        watch_every: int | None = None,
        **init_kwargs,
    ):
        self.run_id, self.runs_dir, self.config = run_id, runs_dir, config
        self.log_every, self.watch_every = log_every, watch_every
        self.init_kwargs = init_kwargs
        self.run: Run | None = None  # rank 0's; None on the other ranks of a distributed job
        self.ranks = Ranks.alone()  # the job's ranks, known once training starts
        self._grad_norm: torch.Tensor | None = None
        self._last_logged_step: int | None = None
        self._last_batch: tuple | None = None  # (batch_idx, loss) of the latest batch

    def on_train_start(self, trainer, pl_module):
        self.log_every = self.log_every or trainer.log_every_n_steps
        self.ranks = Ranks.of_this_process()  # on every rank: the strategy has set up its process group
        if not (self.ranks.is_main and trainer.is_global_zero):
            self.run = None
            return
        config = self.config if self.config is not None else _default_config(trainer, pl_module)
        self.run = init(self.run_id, self.runs_dir, config, **self.init_kwargs)
        self.run.watch(pl_module, every=self.watch_every or self.log_every)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.run is not None and (trainer.global_step + 1) % self.log_every == 0:  # the step about to be taken
            params = [(str(i), p) for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])]
            if any(p.grad is not None for _, p in params):
                with torch.no_grad():  # the global norm: of the per-parameter norms the probes compute
                    self._grad_norm = torch.linalg.vector_norm(grad_norm_tensor(params))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # every rank at every batch, so a stop asked on rank 0 ends every rank after the same batch
        if self.ranks.any(self.run is not None and self.run.should_stop()):
            trainer.should_stop = True
        if self.run is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._last_batch = (batch_idx, loss)  # for the last row at train end
        if trainer.global_step % self.log_every == 0:
            self._log_row(trainer, batch_idx, loss)

    def _log_row(self, trainer, batch_idx: int, loss) -> None:
        step = trainer.global_step  # optimizer steps taken: the same batch repeats it under accumulation
        if step == self._last_logged_step:
            return
        self._last_logged_step = step
        row = {rf.EPOCH: _epoch(trainer, batch_idx)}
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            row[rf.TRAIN_LOSS] = loss
        if trainer.optimizers:
            row[rf.LR] = trainer.optimizers[0].param_groups[0]["lr"]
        if self._grad_norm is not None:
            row[rf.GRAD_NORM], self._grad_norm = self._grad_norm, None
        self.run.log(row, step=step)

    def on_validation_end(self, trainer, pl_module):
        if self.run is None or trainer.sanity_checking:
            return
        row = {}
        for name, value in trainer.callback_metrics.items():
            if name in VAL_LOSS_NAMES:
                row[rf.VAL_LOSS] = value
            elif name.startswith("val") and (not isinstance(value, torch.Tensor) or value.numel() == 1):
                row[name] = value
        if row:
            self.run.log(row, step=trainer.global_step)

    def on_train_end(self, trainer, pl_module):
        self.ranks.close()
        if self.run is not None:
            # the last step's row, where it fell between two logging steps (max_steps 120 logged every
            # 50, a stop at step 56): the run then ends at the step it reached, as the HF Trainer's does
            if self._last_batch is not None:
                self._log_row(trainer, *self._last_batch)
            self.run.finish()

    def on_exception(self, trainer, pl_module, exception):
        if self.run is not None:
            self.run.fail(exception)  # a no-op for a run already finished


def _default_config(trainer, pl_module) -> dict:
    config = plain(dict(pl_module.hparams))
    max_steps = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
    config.update(
        module=type(pl_module).__name__,
        max_steps=int(max_steps) if math.isfinite(max_steps) else None,
        max_epochs=trainer.max_epochs,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        gradient_clip_val=plain(trainer.gradient_clip_val),
        precision=str(trainer.precision),
    )
    return config


def _epoch(trainer, batch_idx: int) -> float:
    batches = trainer.num_training_batches
    if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
        return trainer.current_epoch + (batch_idx + 1) / batches
    return float(trainer.current_epoch)
