"""The online doctor: feed it each record as it is written, get back the new alerts.

    doctor = OnlineDoctor(cfg.to_dict())
    for alert in doctor.observe("metrics", {"step": 100, "train/loss": 2.1, "lr": 1e-3}):
        writer.event("alert", alert["message"], step=alert["step"], **alert)

Incremental state only: no file is read, and the cost per record is a few dozen microseconds
(benchmarks/doctor.py measures it). diagnose() runs the same object over a run's files.
"""

from __future__ import annotations

import heapq

from trainer.doctor.base import RunContext, finite
from trainer.doctor.evidence import RunEvidence
from trainer.doctor.registry import CODES, DETECTORS
from trainer.doctor.tracks import LossTrack
from trainer.rundir import run_format as rf

__all__ = ["CODES", "DETECTORS", "OnlineDoctor", "in_step_order"]

# At one step, the doctor sees the probe before the row and the row before the sample, as our
# trainer logs them.
KIND_ORDER = {"grads": 0, "metrics": 1, "samples": 2}


class OnlineDoctor:
    """All detectors over one run. observe(kind, record) -> list of new alerts (usually empty)."""

    def __init__(self, config: dict | None = None, schema: bool = True, trainer_wrote: bool = True):
        """schema=False: config is another program's dict, never read as ours; trainer_wrote=False:
        our trainer did not write the run, so its LR follows no schedule of ours (RunContext)."""
        self.ctx = RunContext(config, schema, trainer_wrote)
        self.ctx.train = LossTrack()
        self.ctx.evidence = RunEvidence(self.ctx.warmup_steps)  # what the remedies reason from
        self.detectors = [cls(self.ctx) for cls in DETECTORS]
        self._metrics = [d for d in self.detectors if "metrics" in d.kind]
        self._grads = [d for d in self.detectors if d.kind == "grads"]
        self._samples = [d for d in self.detectors if "samples" in d.kind]
        self.alerts: list[dict] = []
        self.last_step = None

    def observe(self, kind: str, record: dict) -> list[dict]:
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return []
        if kind == "metrics":
            self._update_tracks(step, record)
            detectors = self._metrics
        elif kind == "grads":
            self.ctx.evidence.observe_grads(step, record)
            detectors = self._grads
        elif kind == "samples":
            detectors = self._samples
        else:
            return []
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        new = []
        for detector in detectors:
            alert = detector.observe(step, record)
            if alert is not None:
                new.append(alert)
        self.alerts.extend(new)
        return new

    def note_restart(self, step: int) -> None:
        """A resume, fork or config change at step: the declared schedule is checked from here on."""
        self.ctx.change_step = step

    def _update_tracks(self, step: int, row: dict) -> None:
        self.ctx.evidence.observe_metrics(step, row)
        loss = row.get(rf.TRAIN_LOSS)
        if finite(loss):
            self.ctx.train.add(step, loss)
        difficulty = row.get(rf.CURRICULUM_DIFFICULTY)
        if finite(difficulty):
            self.ctx.note_difficulty(step, difficulty)

    def checked(self) -> list[dict]:
        """The codes that had data to judge and did not fire, each with a one-line reason."""
        out = []
        for d in self.detectors:
            reason = d.checked()
            if reason and not any(a["code"] == d.code and a["severity"] != "info" for a in self.alerts):
                out.append({"code": d.code, "reason": reason})
        return out

    def unchecked(self) -> list[str]:
        return [d.code for d in self.detectors if not d.observed]


def in_step_order(records: dict[str, list[dict]]):
    """(kind, record) for each kind's records (each list in file order, with integer steps), merged
    by step as the doctor sees them: diagnose over a run's files, and the doctor that follows a run."""
    streams = [_tagged(kind, rows) for kind, rows in records.items()]
    for _, _, _, kind, record in heapq.merge(*streams):
        yield kind, record


def _tagged(kind: str, records: list[dict]):
    order = KIND_ORDER[kind]
    for i, record in enumerate(records):
        yield record["step"], order, i, kind, record
