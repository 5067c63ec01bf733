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
    """A loss or gradient norm that is NaN or Inf (logged as null). One row is conclusive."""

    code = "non_finite"
    title = "Loss or gradient became NaN/Inf"
    cause = "An update overflowed: LR too high for this batch, no or loose gradient clipping, or fp16 overflow."
    severity = "critical"
    rearm_rows = 3

    def healthy_reason(self) -> str:
        *first, last = WATCHED_FINITE
        return f"every {', '.join(first)} and {last} value is finite"

    def observe(self, step, row):
        bad = [k for k in WATCHED_FINITE if k in row and not finite(row[k])]
        if not any(k in row for k in WATCHED_FINITE):
            return None
        self.observed += 1
        if not bad:
            self.clear()
            return None
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
