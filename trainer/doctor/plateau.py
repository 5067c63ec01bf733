"""The loss_plateau detector: no real improvement of train/loss for a long stretch.

Its own module because "flat" must be shown, not assumed: the window, the drop it is judged
against and the evidence that the level held are a concept of their own. It reads ctx.train
(trainer/doctor/tracks.py), as the detectors of trainer/doctor/loss.py do.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, eval_noise, finite, fmt
from trainer.doctor.loss import LossRising
from trainer.rundir import run_format as rf


class LossPlateau(Detector):
    """No real improvement for a long stretch while the LR is not tiny, after an initial drop,
    with the loss still stuck high (a converged run that has already made most of its drop is not
    a plateau).

    statistic: improvement = mean of the first quarter of the window P minus mean of its last quarter,
    P = max(min_rows rows, window_fraction * step, run_fraction * max_steps)
    fires when improvement + noise_multiple * its sd < min_drop_share * (initial - best)
    and < rate_share x the improvement over the window before (the descent has slowed to a stop),
    and the loss held its level across the whole window (the means of its four quarters within the
    same threshold + hold_noise_multiple x sd of each other: a spike or a rise inside the window is a
    change of level, not a plateau, and the span the message states must be true),
    (without an initial drop, against flat_share of the initial level instead: a loss at its chance
    level that an LR 1000x too low moves 1-3%), level > stuck_fraction * initial level,
    lr >= min_lr_fraction * peak lr, and val/loss (where logged) not falling across the window
    (_val_improving), for confirm_rows rows. The episode ends only when the level
    improves again by more than twice the threshold plus twice its sd, so noise does not re-fire it.
    """

    code = "loss_plateau"
    title = "Loss plateau"
    cause = (
        "The model sits in a flat region: LR too small to leave it, or regularisation (weight decay, clipping) "
        "holding it there (report 001)."
    )
    min_rows = 50
    window_fraction = 0.25
    run_fraction = 0.1  # with a known max_steps, a "long stretch" is at least 10% of the run
    min_drop_share = 0.1
    rate_share = 0.25
    noise_multiple = 1.0
    improving_z = 3.0
    hold_noise_multiple = 2.0  # looser than noise_multiple: 6 pairs of quarters, and a move must be shown
    stuck_fraction = 0.7
    flat_share = 0.02
    min_lr_fraction = 0.2
    confirm_rows = 5
    rearm_rows = 10
    median_difference_sd = 0.95  # sd of the difference of two medians of 3 draws, in sd of one draw
    mean_abs_floor = 0.8  # as overfitting's: the MAD of a few values now and then reads a third
    small_drop_share = 0.15  # words only: under it the message says a converged fine-tune looks the same
    thresholds = (
        "min_rows",
        "window_fraction",
        "run_fraction",
        "min_drop_share",
        "rate_share",
        "noise_multiple",
        "improving_z",
        "hold_noise_multiple",
        "stuck_fraction",
        "flat_share",
        "min_lr_fraction",
        "confirm_rows",
    )

    def healthy_reason(self) -> str:
        return f"train/loss kept improving, or had already fallen below {self.stuck_fraction:.0%} of its initial level"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.peak_lr = 0.0
        self.lr = None
        self.initial = None  # the level the drop is measured from (see _reference)
        self.full_step = None  # with a curriculum: the first step past the ramp
        self.full_rows = 0
        self.full_initial = None
        self.full_best = None
        self.evals: list[tuple[int, float]] = []  # (step, val/loss)

    def _reference(self, step) -> tuple[float, float, int] | None:
        """(initial level, best level, first step) a plateau is judged from: the run's own, or with a
        curriculum, those of the rows at full difficulty (the first level made only of them, as
        loss_rising's lag). A curriculum's loss rises with the difficulty from an easy start, so
        against the run's first rows it never "dropped" and always looked stuck above its initial
        level (issue 11: 13 of 100 healthy `curriculum_paced` runs of the second generator's dev
        block were called plateaus near their end); the task the model faces is the full one."""
        track = self.ctx.train
        if not self.ctx.has_curriculum:
            return track.initial, track.best, track.steps[0]
        if self.full_step is None:
            self.full_step = step
        self.full_rows += 1
        if self.full_rows < track.smooth_rows:
            return None
        if self.full_initial is None:
            self.full_initial = track.level
        self.full_best = track.level if self.full_best is None else min(self.full_best, track.level)
        return self.full_initial, self.full_best, self.full_step

    def observe(self, step, row):
        val = row.get(rf.VAL_LOSS)
        if finite(val):
            self.evals.append((step, val))
        lr = row.get(rf.LR)
        if finite(lr):
            self.lr = lr
            self.peak_lr = max(self.peak_lr, lr)
        if not finite(row.get(rf.TRAIN_LOSS)):
            return None
        self.observed += 1
        ctx, track = self.ctx, self.ctx.train
        if track.count < self.min_rows or ctx.in_warmup(step) or ctx.ramping(step) or track.initial is None:
            return None
        reference = self._reference(step)
        if reference is None:
            return None
        initial, best, first = reference
        self.initial = initial
        spacing = (track.steps[-1] - track.steps[0]) / max(1, track.count - 1)
        window = max(self.min_rows * spacing, self.window_fraction * step, self.run_fraction * (ctx.max_steps or 0))
        then = track.level_at(step - window)
        if then is None or first > step - window:
            return None
        noise = track.noise()
        # improvement: mean of the window's first quarter minus mean of its last quarter, precise
        # on long windows (sd = noise * sqrt(1/m1 + 1/m2)).
        early, m1 = track.mean_between(step - window, step - 0.75 * window)
        late, m2 = track.mean_between(step - 0.25 * window, step)
        if early is None or late is None:
            return None
        improvement = early - late
        spread = noise * math.sqrt(1 / m1 + 1 / m2)
        dropped = initial - best > max(0.02 * abs(initial), 3 * noise)
        # The level, not the best: a loss that jumped and then held (report 003 after its spike) is
        # stuck at its new level whatever its best before the jump was.
        stuck = track.level > self.stuck_fraction * initial
        if initial > 0 and track.level > LossRising.divergence_factor * initial:
            return None  # not stuck but diverged: loss_rising says so, with the start it rose from
        # A decayed LR explains a descent that stopped, not one that never began: a loss whose best
        # level never fell more than flat_share under its start (plus one per-row noise, as the best is
        # the lowest of many medians) did not move at any LR, and is stuck whatever the schedule does
        # now (issue 11: 10 of 100 `plateau_lr_too_low` runs of the second generator's dev block, at an
        # LR 1000x too low, went unreported once a step or cosine decay took the LR under a fifth of its peak).
        lr_ok = (
            initial - best <= self.flat_share * abs(initial) + noise
            or self.lr is None
            or self.peak_lr == 0
            or self.lr >= self.min_lr_fraction * self.peak_lr
        )
        # Flat must be shown, not just "not shown to improve": the improvement plus its noise must stay
        # under a tenth of the drop so far, so a short or noisy window never makes a plateau.
        # Without a drop to speak of (a loss at its chance level, a mean predictor's MSE), flat is
        # measured against the level itself: an LR 1000x too low moves the loss 1-3% and stops.
        threshold = self.min_drop_share * (initial - best) if dropped else self.flat_share * abs(initial)
        earlier_improvement = None
        if first <= step - 2 * window:
            a, _ = track.mean_between(step - 2 * window, step - 1.75 * window)
            b, _ = track.mean_between(step - 1.25 * window, step - window)
            if a is not None and b is not None:
                earlier_improvement = a - b
        # A slow but steady descent improves about as much per window as before; a plateau has
        # lost most of its earlier rate.
        slowed = (
            earlier_improvement is None
            or earlier_improvement <= threshold  # the window before was flat too
            or improvement < self.rate_share * earlier_improvement
        )
        # Small is not flat: a descent that the window shows above its noise (improving_z sd) is
        # still real improvement, however slow against the drop so far (a fine-tune that moved 5-15%
        # and keeps creeping down as its LR decays; a curriculum's loss falling at full difficulty).
        still_improving = improvement > self.improving_z * spread
        flat = improvement + self.noise_multiple * spread < threshold and slowed and not still_improving
        if self.open and improvement - 2 * spread > 2 * threshold:
            self.open = False  # real progress: a later plateau is a new episode
        if flat:  # first quarter against last is not enough: the level must have held all along
            flat = self._held(step, window, (early, late), threshold + self.hold_noise_multiple * spread)
        if flat and self._val_improving(step, window, threshold):
            flat = False
        if not (flat and stuck and lr_ok):
            self.streak = 0  # not note_healthy(): only real progress (above) ends a plateau episode
            return None
        self.streak += 1
        if self.streak < self.confirm_rows:
            return None
        if self.open:
            return None
        i = bisect_left(track.steps, step - window)
        since = track.steps[min(i, len(track.steps) - 1)]
        return self._alert(step, since, improvement, noise)

    def _val_improving(self, step, window, threshold) -> bool:
        """val/loss fell across the window: the median of the last 3 evals is below the median of the 3
        evals up to the window's start by more than a plateau allows train/loss to move, and by more
        than improving_z sd of that difference. The model still learns what it is judged on: a
        curriculum's train/loss is measured on a task that grew harder, and a run's per-row noise can
        hide a slow descent that the evals (a whole val set each) show (issue 11: 13 of 100 healthy
        `curriculum_paced` runs of the second generator's dev block, val at full difficulty still
        falling 2-4% across the window, were called plateaus). The eval noise is each eval's distance
        from the line through its neighbours, over the evals since a window before this one (at least
        6): a trend cancels, and a curvature left in them reads high, the safe side for a veto that
        costs a real plateau its alert; with Student's allowance for a spread read from few evals.
        Where the window holds under 3 evals the two medians share some, which only shrinks the fall."""
        steps = [s for s, _ in self.evals]
        i = bisect_right(steps, step - window)  # evals up to the window's start
        if i < 1 or i == len(self.evals):
            return False  # no eval before the window, or none inside it
        # medians of the 3 evals up to each end: each lags its end alike, so the two span the window
        before = sorted(v for _, v in self.evals[max(0, i - 3) : i])
        then = before[len(before) // 2]
        now = sorted(v for _, v in self.evals[-3:])[1] if len(self.evals) >= 3 else self.evals[-1][1]
        # the noise from the evals the test looks at and a window before them, at least 6
        history = self.evals[min(bisect_right(steps, step - 2 * window), len(self.evals) - 6) :]
        if len(history) < 6:
            return False
        noise = eval_noise(history, self.mean_abs_floor)
        # the median of 3 normal draws has sd 0.67 of one; the difference of two, 0.95
        return then - now > max(threshold, self.improving_z * self.median_difference_sd * noise)

    def _held(self, step, window, ends, tolerance) -> bool:
        """The loss stayed at one level over the whole window: no two quarter means further apart than
        tolerance. First against last alone misses a loss that jumped (a spike, a resume at a higher
        LR) and then held: its window would reach back before the jump and count that time as flat."""
        middle = [self.ctx.train.mean_between(step - (k + 1) * window / 4, step - k * window / 4)[0] for k in (1, 2)]
        means = [*ends, *(m for m in middle if m is not None)]
        return max(means) - min(means) <= tolerance

    def _alert(self, step, since, improvement, noise):
        ctx, track = self.ctx, self.ctx.train
        dropped = 1 - track.level / self.initial if self.initial else 0.0
        message = (
            f"train/loss has stayed at {fmt(track.level)} for {int(step - since)} steps (improved {fmt(improvement)} "
            f"since step {since}) after dropping from {fmt(self.initial)}, with lr {fmt(self.lr) if self.lr else 'n/a'}"
        )
        if dropped < self.small_drop_share:
            # By the loss alone, a model stuck near where it began (report 001: 1.09 -> 0.98, then flat)
            # and a fine-tune that converged early to a floor a few percent under its start are the same
            # run (issue 11, wildsuite `finetune_low`): the alert says so rather than claim to know.
            message += (
                f"; it moved only {dropped:.0%} from its start: stuck near where it began, or, if it started from "
                "trained weights, a fine-tune that converged early (compare val/loss with the base model's first)"
            )
        return self.fire(
            step,
            message,
            evidence := {
                "level": track.level,
                "since_step": since,
                "improvement": improvement,
                "initial": self.initial,
                "drop_share": round(dropped, 3),
                "lr": self.lr,
                "noise": noise,
            },
            R.for_alert(self.code, ctx, evidence, step),
        )
