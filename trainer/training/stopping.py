"""Why a run stops early: SIGTERM / Ctrl-C, early stopping on val/loss (control/stop: trainer.rundir.stop_request).

Signals only set a flag: the step in progress finishes, a checkpoint is written and the run
ends in state "stopped" with exit code 0. A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import math
import signal
import threading


class StopSignals:
    """SIGTERM and SIGINT -> `requested` (the signal's name); restore() puts the old handlers back."""

    def __init__(self):
        self.requested: str | None = None
        self._old: dict[int, object] = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user means it
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


class EarlyStopping:
    """Stop when val/loss has not improved on `reference` by more than min_delta for `patience`
    evals (0 = off). `best` is the lowest val/loss seen, which names best.pt."""

    def __init__(self, patience: int, min_delta: float, state: dict | None = None):
        self.patience = patience
        self.min_delta = min_delta
        state = state or {}
        self.best: float | None = state.get("best")
        self.reference: float | None = state.get("reference")
        self.bad_evals: int = state.get("bad_evals", 0)

    def observe(self, val_loss: float) -> bool:
        """Record one eval; True when it is the lowest val/loss so far."""
        if not math.isfinite(val_loss):
            self.bad_evals += 1
            return False
        if self.reference is None or val_loss < self.reference - self.min_delta:
            self.reference, self.bad_evals = val_loss, 0
        else:
            self.bad_evals += 1
        if self.best is None or val_loss < self.best:
            self.best = val_loss
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "reference": self.reference, "bad_evals": self.bad_evals}
