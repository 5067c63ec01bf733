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
    a gradient norm alone needs grad_rows rows in a row (grad_rows_fp16 where the config declares
    fp16 loss scaling: HF's `fp16: true`, our `amp: fp16`): a GradScaler skips the step whose
    gradients overflowed and halves its scale, so inf norms beside a finite loss, a few and now and
    then, are that (the Hugging Face Trainer logs them while the scale settles from 65536), not a
    failure. Two rows in a row happen while it settles (issue 11: 15 of 100 healthy fp16 runs of
    the second generator's dev block were called non_finite at 2); a run of skipped steps that goes
    on is a failure, and a real overflow turns the loss non-finite within a few rows anyway.
    A run without such a config that has come back once from a non-finite norm, its loss finite,
    gets grad_rows_fp16 from then on: in fp32 an overflowed update leaves NaN weights, and nothing
    comes back, so coming back shows a scaler skipping steps (an HF run with no config.yaml had 3 in
    a row after one it came back from: fp16_overflow-74 of the second generator's dev block)."""

    code = "non_finite"
    title = "Loss or gradient became NaN/Inf"
    cause = "An update overflowed: LR too high for this batch, no or loose gradient clipping, or fp16 overflow."
    severity = "critical"
    grad_rows = 3
    grad_rows_fp16 = 6
    rearm_rows = 3
    thresholds = ("grad_rows", "grad_rows_fp16")

    def __init__(self, ctx):
        super().__init__(ctx)
        self.grad_streak = 0  # rows in a row whose only non-finite value is grad/norm
        raw = ctx.raw
        scaled = raw.get("fp16") is True or raw.get("amp") == "fp16"
        self.needed = self.grad_rows_fp16 if scaled else self.grad_rows

    def healthy_reason(self) -> str:
        *first, last = WATCHED_FINITE
        return f"every {', '.join(first)} and {last} value is finite"

    def observe(self, step, row):
        bad = [k for k in WATCHED_FINITE if k in row and not finite(row[k])]
        if not any(k in row for k in WATCHED_FINITE):
            return None
        self.observed += 1
        if not bad:
            if self.grad_streak and finite(row.get(rf.GRAD_NORM)):
                # back from a non-finite norm with the loss finite: the run skips steps, a loss scaler
                # at work whatever its config says (an fp32 overflow leaves NaN weights, no way back)
                self.needed = self.grad_rows_fp16
            self.grad_streak = 0
            self.clear()
            return None
        if bad == [rf.GRAD_NORM]:
            self.grad_streak += 1
            if self.grad_streak < self.needed:
                return None  # a step the loss scaler skipped, unless the next ones are too
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
