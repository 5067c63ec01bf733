"""The training doctor: detectors that read a run and raise alerts with numbers, causes and remedies.

    from trainer.doctor import OnlineDoctor, diagnose, to_markdown
    doctor = OnlineDoctor(config_dict)            # live: inside the training loop
    alerts = doctor.observe("metrics", row)       # kind: metrics | grads | samples
    result = diagnose("runs/<run_id>")            # after the fact: python -m trainer diagnose RUN_DIR
    doctor, _, _ = replay("runs/<run_id>", cfg)   # a doctor that has seen the run so far (resume)
    print(to_markdown(result))

Codes, statistics, windows and thresholds: docs/doctor.md.
"""

from trainer.doctor.diagnose import continued, diagnose, replay
from trainer.doctor.online import CODES, DETECTORS, OnlineDoctor
from trainer.doctor.report import to_markdown

__all__ = ["CODES", "DETECTORS", "OnlineDoctor", "continued", "diagnose", "replay", "to_markdown"]
