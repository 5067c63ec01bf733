"""The online doctor inside the training loop: every logged row (and grads/samples record) goes
to trainer.doctor.OnlineDoctor; each alert it returns becomes an `alert` event, and a critical
alert (doctor.on_critical: stop) or one whose code is in doctor.stop_on asks the run to stop
with a checkpoint.

The doctor is part of this package (one layer below training), so it is imported like any module;
a doctor that fails while replaying a resumed run's history says so in one warning event and
starts afresh instead of failing the run.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from trainer.config import Config
from trainer.doctor import OnlineDoctor, replay
from trainer.doctor.neighbours import name_our_competitors


class DoctorHook:
    def __init__(
        self, cfg: Config, writer, history: Path | None = None, restart_step: int | None = None, on_alert=None
    ):
        """history: the run directory of a resumed run, whose rows (already cut back to the
        checkpoint) are replayed first, so a failure right after the resume (report 003's spike
        after raising the LR) is judged against the run's own history, not an empty window.
        restart_step: where a resume or fork starts; the declared schedule is checked from there.
        on_alert: called with each alert event as written (the terminal prints it)."""
        self.writer, self.on_alert = writer, on_alert
        self.on_critical = cfg.doctor.on_critical
        self.stop_on = set(cfg.doctor.stop_on or [])
        self.stop_requested: str | None = None  # "code: message" of the alert that stops the run
        self.doctor = None
        if not cfg.doctor.enabled:
            return
        self.doctor = self._replayed(history, cfg) if history is not None else None
        if self.doctor is None:
            self.doctor = OnlineDoctor(cfg.to_dict())
        if restart_step is not None:
            self.doctor.note_restart(restart_step)

    def _replayed(self, history: Path, cfg: Config):
        """A doctor that has seen the run's history, or None (said in an info event) if it cannot."""
        try:
            return replay(history, cfg.to_dict())[0]
        except Exception:  # a damaged history must not stop training: judge from here on
            self.writer.event(
                "alert",
                "online doctor could not replay the run's history and starts afresh:\n" + traceback.format_exc(),
                code="doctor_unavailable",
                severity="info",
                evidence={},
                remedy=[],
            )
            return None

    def observe(self, kind: str, record: dict) -> None:
        if self.doctor is None:
            return
        try:
            alerts = self.doctor.observe(kind, record) or []
        except Exception:
            self._disable("online doctor failed and is off for this run:\n" + traceback.format_exc())
            return
        for alert in alerts:
            self._record(name_our_competitors(alert, self.writer.run_dir), record.get("step"))

    def _record(self, alert: dict, step) -> None:
        event = record_alert(self.writer, alert, step)
        if self.on_alert is not None:
            self.on_alert(event)
        if stops_run(alert, self.on_critical, self.stop_on):
            self.stop_requested = self.stop_requested or f"{alert.get('code')}: {alert.get('message', '')}"

    def _disable(self, message: str) -> None:
        self.doctor = None
        self.writer.event("alert", message, code="doctor_unavailable", severity="warning", evidence={}, remedy=[])


def record_alert(writer, alert: dict, step=None) -> dict:
    """Write one doctor alert as an `alert` event (docs/run-format.md); returns the event."""
    code, severity = alert.get("code", "unknown"), alert.get("severity", "warning")
    fields = {k: alert[k] for k in ("evidence", "remedy") if k in alert}
    return writer.event(
        "alert", alert.get("message", code), step=alert.get("step", step), code=code, severity=severity, **fields
    )


def stops_run(alert: dict, on_critical: str, stop_on) -> bool:
    """Does this alert ask the run to stop (doctor.on_critical: stop, or its code in doctor.stop_on)?"""
    return alert.get("code") in stop_on or (on_critical == "stop" and alert.get("severity") == "critical")
