"""The non_finite detector: a train/loss, val/loss or grad/norm that is NaN or Inf (logged as null).

Its own module because it is the one detector that needs no history: one bad row is conclusive,
and it is the only code that stops the run by default (doctor.on_critical).
"""

from __future__ import annotations

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt
from trainer.rundir import run_format as rf

WATCHED_FINITE = (rf.TRAIN_LOSS, rf.GRAD_NORM, rf.VAL_LOSS)


class NonFinite(Detector):
    """A loss or gradient norm that is NaN or Inf (logged as null). One row of a loss is conclusive;
    a gradient norm alone needs grad_rows rows in a row: with fp16, a GradScaler skips the step
    whose gradients overflowed and lowers its scale, so an isolated inf norm beside a finite loss
    is that (the Hugging Face Trainer logs them while the scale settles), not a failure."""

    code = "non_finite"
    title = "Loss or gradient became NaN/Inf"
    cause = "An update overflowed: LR too high for this batch, no or loose gradient clipping, or fp16 overflow."
    severity = "critical"
    grad_rows = 2
    rearm_rows = 3
    thresholds = ("grad_rows",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.grad_streak = 0  # rows in a row whose only non-finite value is grad/norm

    def healthy_reason(self) -> str:
        *first, last = WATCHED_FINITE
        return f"every {', '.join(first)} and {last} value is finite"

    def observe(self, step, row):
        bad = [k for k in WATCHED_FINITE if k in row and not finite(row[k])]
        if not any(k in row for k in WATCHED_FINITE):
            return None
        self.observed += 1
        if not bad:
            self.grad_streak = 0
            self.clear()
            return None
        if bad == [rf.GRAD_NORM]:
            self.grad_streak += 1
            if self.grad_streak < self.grad_rows:
                return None  # a step the loss scaler skipped, unless the next is too
        else:
            self.grad_streak = 0
        last = self.ctx.train.last
        message = f"{' and '.join(bad)} became non-finite (NaN/Inf) at step {step}" + (
            f"; the last finite train/loss was {fmt(last)}" if last is not None else ""
        )
        return self.fire(
            step,
            message,
            evidence := {"series": bad, "last_finite_train_loss": last},
            R.for_alert(self.code, self.ctx, evidence, step),
        )
