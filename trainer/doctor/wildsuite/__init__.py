"""Runs from the wild: a second, independent scenario generator for the doctor (issue 11).

    from trainer.doctor.wildsuite import NAMES, make, write_run, run_suite, by_code
    run = make("explode_slow", 3)               # a labelled WildRun: code, sudden, onset, evidence
    write_run(run, "/tmp/wild", "explode_slow-3")
    python benchmarks/doctor_wild.py            # recall, false alarms, delay per code (dev seeds)

Runs shaped like other people's programs (the Hugging Face Trainer, timm, Lightning, a plain
script through trainer.init): their schedules, logging intervals, evals, configs (partial or none)
and the keys they log, healthy and failing, with slow versions of each failure that can be slow.
It was written without reading the doctor's detectors or its own scenarios, so its labels say what
a failure is, not what a detector looks at.

Seeds (stated in docs/doctor.md too):
- DEV_SEEDS, 0-99: the development block. Anyone may look at these while changing the doctor.
- REPORT_SEEDS, 1000-1199: the fixed report block. No change is ever tuned on it; it is run only
  to report figures (benchmarks/doctor_wild.py --report).
"""

from __future__ import annotations

from trainer.doctor.wildsuite.catalogue import FAILING, HEALTHY, NAMES, SHAPES, make
from trainer.doctor.wildsuite.run import WildRun, write_run
from trainer.doctor.wildsuite.scoring import by_code, evaluate, run_suite

DEV_SEEDS = range(0, 100)
REPORT_SEEDS = range(1000, 1200)

__all__ = [
    "DEV_SEEDS",
    "FAILING",
    "HEALTHY",
    "NAMES",
    "REPORT_SEEDS",
    "SHAPES",
    "WildRun",
    "by_code",
    "evaluate",
    "make",
    "run_suite",
    "write_run",
]
