"""A labelled run from the wild (`WildRun`) and how it is written to disk (`write_run`).

The files are written the way another program would write them from docs/run-format.md, line by
line with json (non-finite numbers as null), not through our RunWriter: the contract, not our
writer, is what a run from elsewhere shares with us.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trainer.errors import RunExists
from trainer.rundir import run_format as rf


@dataclass
class WildRun:
    """One labelled run. The labels (what the scorer reads) come first, then the files' records.

    code: the alert code a failure should raise, None for a healthy run.
    sudden: one logged row after `onset` is conclusive (delay is counted in log intervals, and in
        rows of the series that shows it, `seen_every` steps apart);
        else the failure is slow and delay counts from `evidence` as a fraction of the run.
    onset: first step of the failure (None if healthy); evidence: the step by which a slow failure
        is plain by the rule stated where the shape is defined (= onset for sudden ones).
    """

    name: str
    seed: int
    code: str | None
    sudden: bool
    onset: int | None
    evidence: int | None
    max_steps: int
    log_interval: int
    program: str  # what wrote it: hf_trainer, timm, lightning, script
    # Steps between rows of the series that shows the failure (evals, samples, probes, else
    # train rows): a sudden failure's delay counted in those rows too.
    seen_every: int = 0
    metrics: list[dict] = field(default_factory=list)
    grads: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    config: dict | None = None  # None: no config.yaml at all
    status: dict | None = None  # None: no status.json at all

    @property
    def healthy(self) -> bool:
        return self.code is None


def _nulls(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value


def _write_jsonl(path: Path, records: list[dict]) -> None:
    if not records:
        return  # a program that never logs a kind writes no file for it
    lines = (json.dumps(_nulls(r), separators=(",", ":"), allow_nan=False) for r in records)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_run(run: WildRun, runs_dir: str | Path, run_id: str) -> Path:
    """Write `run` as runs_dir/run_id/ and return that directory; an existing run is refused."""
    run_dir = rf.run_path(runs_dir, run_id)
    if run_dir.exists():
        raise RunExists(f"run {run_id!r} already exists in {runs_dir}; pick another run id or an empty runs_dir")
    run_dir.mkdir(parents=True)
    if run.config is not None:
        (run_dir / rf.CONFIG_FILE).write_text(yaml.safe_dump(run.config, sort_keys=False), encoding="utf-8")
    if run.status is not None:
        status = {"format_version": rf.FORMAT_VERSION, "run_id": run_id, **run.status}
        (run_dir / rf.STATUS_FILE).write_text(json.dumps(status, indent=1), encoding="utf-8")
    _write_jsonl(run_dir / rf.METRICS_FILE, run.metrics)
    _write_jsonl(run_dir / rf.GRADS_FILE, run.grads)
    _write_jsonl(run_dir / rf.SAMPLES_FILE, run.samples)
    _write_jsonl(run_dir / rf.EVENTS_FILE, run.events)
    return run_dir
