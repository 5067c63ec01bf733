"""lr_anomaly: the logged learning rate against the schedule the run declares, or, where it
declares none, against itself.

A run declares a schedule only when our trainer wrote it and its config.yaml names one
(RunContext.declared_schedule); its LR is then held to trainer.config.schedule.lr_at within a
factor. Every other run (a script through trainer.init, an import, a directory without
status.json, a config without a `schedule` key) follows a schedule we do not know: Hugging Face's
linear warm-up and decay to zero, timm's cosine or step decay, a one-cycle, a constant. Its LR is
judged by what no smooth schedule does (issue 11):

1. not finite or negative;
2. zero after it was positive, unless its own trend led there (a linear or cosine decay that ends
   at zero reaches it from a few percent of its peak, on a line through the last rows);
3. a rise between two rows by more than `jump_factor` once it had come down from its peak (a
   resume that lost the schedule jumps back up; a warm-up only rises while it sets new peaks);
4. a rise to `above_peak_factor` times its peak so far once it had settled there (report 003
   resumed at 15x). From a flat start only past `early_fraction` of a run of known length: timm's
   per-epoch warm-up holds its warmup_lr for a whole first epoch, then jumps 10-60x, the same
   shape as a constant LR raised by hand;
5. a fall between two rows by more than `drop_factor` that the trend does not predict (a x0.1
   step decay is a schedule; a resume that restarted its warm-up falls by hundreds).
"""

from __future__ import annotations

from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt
from trainer.rundir import run_format as rf


class LrAnomaly(Detector):
    """LR non-finite, zero where its trend does not lead, or jumping where no schedule explains it;
    with a declared schedule, off it by more than a factor.

    statistic: declared: lr / lr_at(step) of config.yaml (step and step - 1, the nearer), from the
    last resume/fork/config change on; undeclared: lr against the previous logged lr, its peak so
    far and the line through the last two rows.
    fires when (critical) lr is non-finite, negative or 0 for zero_rows rows (0 after a trend that
    led to it is the end of a decay, healthy); (warning) off the declared schedule by more than
    schedule_factor for confirm_rows rows; undeclared: up by jump_factor between rows once below its
    peak / decayed_factor, up to above_peak_factor x its peak after established_rows rows and a warm-up, or down by
    drop_factor between rows and to under half of the trend's extrapolation.
    """

    code = "lr_anomaly"
    title = "Learning-rate anomaly"
    cause = (
        "The optimiser's LR is not what a schedule gives: a resume that lost or restarted the schedule, a "
        "scheduler bug, an LR of 0, or (with a declared schedule) not what the config declares."
    )
    schedule_factor = 1.2
    confirm_rows = 3
    zero_rows = 2  # a zero or non-finite LR is conclusive sooner than a drift from the schedule
    jump_factor = 1.25
    decayed_factor = 1.1
    above_peak_factor = 3.0
    established_rows = 10
    drop_factor = 20.0  # beyond a x0.1 step decay, which other programs declare as a schedule
    near_zero_fraction = 0.05
    end_rows = 2  # rows at 0 a decay may end on (a last logged step, a summary row)
    config_factor = 3.0
    early_fraction = 0.2
    config_factor_below = 10.0
    rearm_rows = 3
    thresholds = (
        "schedule_factor",
        "confirm_rows",
        "zero_rows",
        "jump_factor",
        "decayed_factor",
        "above_peak_factor",
        "established_rows",
        "drop_factor",
        "near_zero_fraction",
        "end_rows",
        "config_factor",
        "config_factor_below",
        "early_fraction",
    )

    def healthy_reason(self) -> str:
        if self.ctx.declared_schedule is not None:
            return (
                f"lr was positive and within {self.schedule_factor:g}x of the declared "
                f"{self.ctx.declared_schedule} schedule"
            )
        return (
            f"lr stayed finite and positive (or decayed to 0 along its trend), with no jump a schedule does not "
            f"explain (up {self.jump_factor:g}x after its peak, down {self.drop_factor:g}x)"
        )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.history: deque = deque(maxlen=2)  # the last two positive (step, lr) rows
        self.peak = 0.0
        self.positive_rows = 0
        self.first = None  # the first positive lr: a warm-up has happened once the peak is above it
        self.decayed_to_zero = False  # reached 0 along its trend: the end of a schedule, not a fault
        self.zero_rows_seen = 0  # rows at 0 in a row

    def observe(self, step, row):
        if rf.LR not in row:
            return None
        lr = row[rf.LR]
        self.observed += 1
        if not finite(lr) or lr < 0:
            return self._broken(step, lr)
        if self.ctx.declared_schedule is not None:
            return self._against_schedule(step, lr)
        return self._by_itself(step, lr)

    # --- 1. non-finite or negative ----------------------------------------------------------------
    def _broken(self, step, lr):
        if not self.confirmed(True, self.zero_rows):
            return None
        shown = fmt(lr) if finite(lr) else "not a number (NaN/Inf)"
        return self.fire(
            step,
            f"lr is {shown} at step {step} ({self.streak} rows in a row): the optimiser's updates are undefined",
            evidence := {"lr": lr if finite(lr) else None, "rows": self.streak},
            R.for_alert(self.code, self.ctx, evidence, step),
            severity="critical",
        )

    # --- declared schedule (our trainer's config.yaml) --------------------------------------------
    def _against_schedule(self, step, lr):
        ctx = self.ctx
        if step < ctx.change_step:  # before the last restart, the config's schedule was another
            self.note_healthy()
            return None
        expected = [e for e in (ctx.expected_lr(step), ctx.expected_lr(step - 1)) if e is not None]
        if lr == 0:
            factor = float("inf") if all(e > 0 for e in expected) else 1.0
        else:
            factor = min((max(lr / e, e / lr) if e > 0 else float("inf")) for e in expected)
        rows = self.zero_rows if lr == 0 else self.confirm_rows
        if not self.confirmed(factor > self.schedule_factor, rows):
            return None
        schedule = ctx.declared_schedule
        if lr == 0:
            return self.fire(
                step,
                f"lr is 0 at step {step} while the declared {schedule} schedule gives {fmt(expected[0])}: "
                "the weights are not being updated",
                evidence := {"lr": lr, "expected": expected[0], "schedule": schedule},
                R.for_alert(self.code, ctx, evidence, step),
                severity="critical",
            )
        return self.fire(
            step,
            f"lr {fmt(lr)} at step {step} is {factor:.2g}x {'above' if lr > expected[0] else 'below'} the declared "
            f"{schedule} schedule, which gives {fmt(expected[0])} ({self.streak} rows in a row)",
            evidence := {"lr": lr, "expected": expected[0], "factor": round(factor, 3), "schedule": schedule},
            R.for_alert(self.code, ctx, evidence, step),
        )

    # --- undeclared: the LR judged by itself ------------------------------------------------------
    def _by_itself(self, step, lr):
        if lr == 0:
            return self._zero(step)
        self.zero_rows_seen = 0
        if self.decayed_to_zero:  # positive again after a decay to 0: a new stage, judged afresh
            self.history.clear()
            self.peak, self.positive_rows, self.decayed_to_zero, self.first = 0.0, 0, False, None
        jump = self._jump(step, lr) or self._off_config(step, lr)
        self.history.append((step, lr))
        self.peak = max(self.peak, lr)
        self.positive_rows += 1
        if self.first is None:
            self.first = lr
        if jump is None:
            self.note_healthy()
            return None
        message, evidence = jump
        evidence = {"lr": lr, **evidence}
        return self.fire(step, message, evidence, R.for_alert(self.code, self.ctx, evidence, step))

    def _trend_at(self, step) -> float | None:
        """The LR the line through the last two positive rows gives at step (None with one row)."""
        if len(self.history) < 2:
            return None
        (s1, l1), (s2, l2) = self.history
        if s2 <= s1:
            return l2
        return l2 + (l2 - l1) / (s2 - s1) * (step - s2)

    def _zero(self, step):
        """0 before any positive LR is a warm-up that starts at 0 (timm holds it for a whole epoch):
        not judged. 0 after a positive LR is a fault unless a decay led there; a decay that led
        there and then holds 0 while the run logs on (more than end_rows rows, or short of a
        known max_steps) ended before the run did (a schedule sized for too few steps)."""
        if step <= 0 or not self.history:
            self.note_healthy()
            return None
        self.zero_rows_seen += 1
        last_step, last = self.history[-1]
        if not self.decayed_to_zero and self.zero_rows_seen == 1:
            trend = self._trend_at(step)
            falling = trend is not None and trend < last
            near_zero = last <= self.near_zero_fraction * self.peak
            self.decayed_to_zero = falling and (near_zero or trend <= self.near_zero_fraction * self.peak)
        max_steps = self.ctx.max_steps
        early = finite(max_steps) and step < (1 - self.near_zero_fraction) * max_steps
        if self.decayed_to_zero and not early and self.zero_rows_seen <= self.end_rows:
            self.note_healthy()
            return None
        if not self.confirmed(True, self.zero_rows if not self.decayed_to_zero else 1):
            return None
        share = f"{last / self.peak:.0%} of its peak" if self.peak else "its peak"
        if self.decayed_to_zero:
            message = (
                f"lr decayed to 0 by step {step} (from {fmt(last)} at step {last_step}) and stays 0 while the run "
                f"goes on ({self.zero_rows_seen} rows{f' of max_steps {max_steps}' if finite(max_steps) else ''}): "
                "the schedule ended before training did, so the weights are no longer updated"
            )
        else:
            message = (
                f"lr fell to 0 at step {step} from {fmt(last)} at step {last_step} ({share}), which its trend "
                "did not lead to: the weights are not being updated"
            )
        return self.fire(
            step,
            message,
            evidence := {
                "lr": 0.0,
                "before": last,
                "before_step": last_step,
                "peak": self.peak,
                "zero_rows": self.zero_rows_seen,
            },
            R.for_alert(self.code, self.ctx, evidence, step),
            severity="critical",
        )

    def _jump(self, step, lr) -> tuple[str, dict] | None:
        """(message, evidence) when lr moved in a way no smooth schedule does, else None."""
        if not self.history:
            return None
        last_step, last = self.history[-1]
        since = f"from {fmt(last)} at step {last_step} to {fmt(lr)} at step {step}"
        evidence = {"before": last, "before_step": last_step, "factor": round(lr / last, 5), "peak": self.peak}
        if lr > self.jump_factor * last and last < self.peak / self.decayed_factor:
            return (
                f"lr rose {lr / last:.2g}x {since}, after it had come down from its peak {fmt(self.peak)}: "
                "no schedule rises in one step once it decays (a resume that lost the schedule?)",
                evidence,
            )
        # A warm-up sets new peaks too: a rise far above the peak counts after a warm-up was seen,
        # right after a resume (report 003's 15x), or from a flat start unless it is in the first
        # early_fraction of a run of known length (timm's per-epoch warm-up holds warmup_lr for
        # its first epoch, then jumps 10-60x).
        warmed_up = self.peak > self.decayed_factor * self.first
        resumed = 0 < step - self.ctx.change_step <= 2 * max(1, step - last_step)
        max_steps = self.ctx.max_steps
        late = not finite(max_steps) or step >= self.early_fraction * max_steps
        if (
            lr > self.above_peak_factor * self.peak
            and self.positive_rows >= self.established_rows
            and (warmed_up or resumed or late)
        ):
            after = f"the resume at step {self.ctx.change_step}" if resumed else f"{self.positive_rows} rows"
            return (
                f"lr jumped to {lr / self.peak:.3g}x its peak so far {fmt(self.peak)} ({since}), after {after}",
                evidence,
            )
        trend = self._trend_at(step)
        predicted = last if trend is None else trend
        if lr < last / self.drop_factor and lr < 0.5 * predicted and last > self.near_zero_fraction * self.peak:
            return (
                f"lr fell {last / lr:.3g}x {since}, where its trend gave {fmt(predicted)}: more than a step "
                "decay's x0.1 (a resume that restarted its warm-up?)",
                {**evidence, "trend": predicted},
            )
        return None

    def _off_config(self, step, lr) -> tuple[str, dict] | None:
        """The run's own config names its LR (`lr` or `learning_rate`): no schedule goes above its
        configured peak by config_factor, and none starts flat far below it. Only from the last
        resume/fork/config change on: config.yaml is rewritten there, so the rows before it ran under
        another config (a resume with LEARNING_RATE raised 5-20x leaves the new lr in config.yaml, and
        the rows before it read "flat far below the config's lr": 4 `lr_resumed_high` runs of the
        second generator's dev block)."""
        if step < self.ctx.change_step:
            return None
        named = next((self.ctx.raw.get(k) for k in ("lr", "learning_rate") if finite(self.ctx.raw.get(k))), None)
        if not named or named <= 0:
            return None
        evidence = {"config_lr": named, "factor": round(lr / named, 5)}
        if lr > self.config_factor * named:
            return (
                f"lr {fmt(lr)} at step {step} is {lr / named:.3g}x the {fmt(named)} the run's config names: no "
                "schedule goes above its configured peak",
                evidence,
            )
        # Flat from its first rows and far below: a warm-up rises row by row, a decay comes later.
        flat_start = self.history and self.positive_rows < self.established_rows and lr == self.history[-1][1]
        if flat_start and lr < named / self.config_factor_below and self.peak <= lr:
            return (
                f"lr {fmt(lr)} at step {step} is {named / lr:.3g}x below the {fmt(named)} the run's config names, "
                "flat from the start: not a warm-up",
                evidence,
            )
        return None
