"""The detectors the doctor runs, found in their modules: no list of classes to keep in step.

A detector describes itself (trainer/doctor/base.py: code, title, cause, thresholds, healthy
reason); every Detector subclass with a code in one of MODULES runs, in the order of MODULES and,
within a module, in the order the classes are defined. The report and the codes table of
docs/doctor.md (checked by tests/test_doctor_codes.py) derive from the same classes.
"""

from __future__ import annotations

from trainer.doctor import generalisation, gradients, learning_rate, loss, nonfinite, outputs, plateau, system
from trainer.doctor.base import Detector

# The run order is the order alerts of one step are reported in: non_finite first (the one code
# that stops a run), then the loss, what the model outputs, val against train, gradients, and the
# machinery. A detector in a new module is found once its module is added here.
MODULES = (nonfinite, loss, plateau, outputs, generalisation, gradients, system, learning_rate)


def detectors_in(module) -> list[type[Detector]]:
    """The detectors a module defines (shared bases without a code, and imported classes, excluded)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Detector)
        and value.code
        and value.__module__ == module.__name__
    ]


DETECTORS: tuple[type[Detector], ...] = tuple(d for module in MODULES for d in detectors_in(module))
CODES = tuple(d.code for d in DETECTORS)
BY_CODE = {d.code: d for d in DETECTORS}
if len(BY_CODE) != len(DETECTORS):
    raise TypeError(f"two detectors declare the same code ({', '.join(CODES)}): give each its own code")
