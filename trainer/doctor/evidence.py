"""What a run shows about the mechanisms behind its failures, kept as its records arrive.

The remedies (trainer/doctor/remedies.py) are chosen and explained from these numbers, not from
the config alone: is decoupled weight decay shrinking the weights (grads.jsonl's decay_per_step,
decayed_norm, embedding_norm), did the LR jump before a spike (metrics' lr), how large was the
batch each step saw (effective_batch). OnlineDoctor feeds one RunEvidence per run; it keeps O(1)
state per record, so the live doctor and `diagnose` see the same evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.doctor.base import finite
from trainer.rundir import run_format as rf

# An LR that more than doubles from one logged row to the next, past warm-up, is a change made to
# the run (a resume or fork with a new LR), not its schedule: warm-up and cosine move far slower.
LR_JUMP_FACTOR = 2.0


@dataclass
class NormTrack:
    """One joint weight norm over the run: its reference (as initialised, else the first probe),
    its peak and its latest value, each with the step it was seen at."""

    reference: tuple[int, float] | None = None
    peak: tuple[int, float] | None = None
    latest: tuple[int, float] | None = None

    def add(self, step: int, value: float) -> None:
        if self.reference is None:
            self.reference = (step, value)
        if self.peak is None or value > self.peak[1]:
            self.peak = (step, value)
        self.latest = (step, value)

    def fall(self) -> tuple[int, float, int, float] | None:
        """(step, norm) of the peak and (step, norm) now, when the norm has fallen since its peak."""
        if self.peak is None or self.latest is None or self.latest[0] <= self.peak[0]:
            return None
        if self.latest[1] >= self.peak[1]:
            return None
        return (*self.peak, *self.latest)

    def kept(self) -> float | None:
        """The latest norm as a share of the peak (1.0: not shrunk), or None before two probes."""
        if self.peak is None or self.latest is None or self.peak[1] <= 0 or self.latest[0] == self.peak[0]:
            return None
        return self.latest[1] / self.peak[1]


class RunEvidence:
    """The mechanism numbers of one run, as far as its records have shown them."""

    def __init__(self, warmup_steps: int = 0):
        self.warmup_steps = warmup_steps
        self.lr: float | None = None  # latest logged lr (metrics rows, else the probes')
        self.lr_jumps: list[tuple[int, float, float]] = []  # (step, lr before, lr after)
        self.decay: float | None = None  # latest decay_per_step from the probes
        self.effective_batch: float | None = None
        self.norms = {rf.EMBEDDING_NORM: NormTrack(), rf.DECAYED_NORM: NormTrack()}
        self.weights: dict[str, float] = {}  # latest weight norm per parameter
        self.ratios: dict[str, float] = {}  # latest update ratio per parameter

    def observe_metrics(self, step: int, row: dict) -> None:
        lr = row.get(rf.LR)
        if not finite(lr):
            return
        if self.lr is not None and self.lr > 0 and lr > LR_JUMP_FACTOR * self.lr and step > self.warmup_steps:
            self.lr_jumps.append((step, self.lr, lr))
        self.lr = lr

    def observe_grads(self, step: int, record: dict) -> None:
        initial = record.get(rf.INITIAL)
        for key, track in self.norms.items():
            if isinstance(initial, dict) and finite(initial.get(key)) and track.reference is None:
                track.add(0, initial[key])
            if finite(record.get(key)):
                track.add(step, record[key])
        if finite(record.get(rf.DECAY_PER_STEP)):
            self.decay = record[rf.DECAY_PER_STEP]
        if finite(record.get(rf.EFFECTIVE_BATCH)):
            self.effective_batch = record[rf.EFFECTIVE_BATCH]
        for key, into in ((rf.WEIGHT_NORMS, self.weights), (rf.UPDATE_RATIOS, self.ratios)):
            values = record.get(key)
            if isinstance(values, dict):
                into.update(values)

    def jump_before(self, step: int) -> tuple[int, float, float] | None:
        """The last LR jump at or before step."""
        earlier = [j for j in self.lr_jumps if j[0] <= step]
        return earlier[-1] if earlier else None
