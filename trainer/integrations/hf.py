"""The Hugging Face Trainer watched by the training doctor: one callback (docs/logging-api.md).

    from trainer.integrations.hf import DoctorCallback

    doctor = DoctorCallback(run_id="gpt2-1")                  # runs/gpt2-1/, as trainer.init
    trainer = transformers.Trainer(model, args, ..., callbacks=[doctor])
    with doctor:                                              # optional: a raise marks the run failed
        trainer.train()                                       # (a script's excepthook does it anyway)

    python examples/hf_gpt2.py                                # a runnable example

What it does, hook by hook:
1) on_train_begin: trainer.init(run_id, runs_dir, config), config defaulting to the
   TrainingArguments as a dict plus the model's config under "model"; then run.watch(model).
2) on_log: the Trainer's logs under our names (LOG_KEYS); other numbers keep the Trainer's name.
3) on_step_end: run.should_stop() (the dashboard's Stop, `python -m trainer stop`, a stopping
   alert) sets control.should_training_stop, so the Trainer ends after this step, as at max_steps.
4) on_train_end: run.finish(): stopped if a stop was asked, else finished.
Under torchrun or accelerate launch (several processes): rank 0 alone opens and writes the run, and
a stop asked there ends every rank after the same step (trainer/integrations/ranks.py).

A raise: the Trainer calls no hook when training raises, so the run stays open. In a script the
logging API's excepthook marks it failed when the exception ends the process; where no excepthook
runs (Jupyter, or a caller that catches the exception) `with doctor:` marks it failed (a Ctrl-C
stopped) and re-raises. A callback reused for a second train() after a raise fails the old run then.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import torch
from transformers import TrainerCallback

from trainer.api import Run, init
from trainer.integrations.plain import plain
from trainer.integrations.ranks import Ranks
from trainer.rundir import run_format as rf

# The Trainer's log names -> ours. eval_loss is the Trainer's evaluation on eval_dataset.
LOG_KEYS = {
    "loss": rf.TRAIN_LOSS,
    "learning_rate": rf.LR,
    "grad_norm": rf.GRAD_NORM,
    "eval_loss": rf.VAL_LOSS,
    "epoch": rf.EPOCH,
}
WATCH_EVERY_DEFAULT = 100  # optimizer steps between grads.jsonl rows when logging_steps is a ratio


class DoctorCallback(TrainerCallback):
    """Opens a run on train begin, logs the Trainer's logs to it, stops on request, finishes it.

    run_id, runs_dir: as trainer.init (None: <script>-<date>-<time> under $TRAINER_RUNS_DIR or ./runs).
    config: config.yaml's dict; None: TrainingArguments.to_dict() plus {"model": model.config}.
    watch_every: optimizer steps between gradient-norm rows (run.watch); None: args.logging_steps.
    init_kwargs: passed on to trainer.init (doctor, on_critical, stop_on).
    """

    def __init__(
        self,
        run_id: str | None = None,
        runs_dir: str | Path | None = None,
        config: dict | None = None,
        watch_every: int | None = None,
        **init_kwargs,
    ):
        self.run_id, self.runs_dir, self.config = run_id, runs_dir, config
        self.watch_every = watch_every
        self.init_kwargs = init_kwargs
        self.run: Run | None = None  # rank 0's; None on the other ranks of a distributed job
        self.ranks = Ranks.alone()  # the job's ranks, known once train begins

    # --- the Trainer's hooks ----------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._fail_left_open("train() raised before it ended (on_train_end was not called)")
        self.ranks = Ranks.of_this_process()  # on every rank: the Trainer has set up its process group
        if not (self.ranks.is_main and state.is_world_process_zero):
            self.run = None
            return
        config = self.config if self.config is not None else _default_config(args, state, model)
        self.run = init(self.run_id, self.runs_dir, config, **self.init_kwargs)
        if model is not None:
            self.run.watch(model, every=self.watch_every or _logging_steps(args))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        row = {LOG_KEYS.get(key, key): value for key, value in logs.items() if _is_number(value)}
        if row:
            self.run.log(row, step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        # every rank at every step, so a stop asked on rank 0 ends every rank after the same step
        if self.ranks.any(self.run is not None and self.run.should_stop()):
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.ranks.close()
        if self.run is not None:
            self.run.finish()

    # --- with doctor: trainer.train() -------------------------------------------------------------
    def __enter__(self) -> DoctorCallback:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and self.run is not None:
            self.run.fail(exc)  # a no-op if on_train_end already finished it
        return False  # the exception goes on to the caller

    def _fail_left_open(self, message: str) -> None:
        if self.run is not None:
            self.run.fail(RuntimeError(message))  # a no-op for a run that finished


def _default_config(args, state, model) -> dict:
    config = plain(args.to_dict())
    config["max_steps"] = state.max_steps  # the Trainer's own count (args.max_steps is -1 by epochs)
    model_config = getattr(model, "config", None)
    if model_config is not None and hasattr(model_config, "to_dict"):
        config["model"] = plain(model_config.to_dict())
    return config


def _logging_steps(args) -> int:
    steps = args.logging_steps
    return int(steps) if steps >= 1 and float(steps).is_integer() else WATCH_EVERY_DEFAULT


def _is_number(value) -> bool:
    """What run.log takes: a number (numpy's too) or a one-element tensor, checked without a GPU sync."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
