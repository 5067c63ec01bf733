"""What the live page shows besides charts: newest values with their change, and alerts.

Alerts come from events.jsonl rows with kind "alert" (written by the doctor): code, severity,
step, message, evidence {name: number}, remedy [{"kind", "start", "set": {key: value}, "why": ...}]
(trainer/doctor/remedies.py).

    tiles = latest_with_change(metrics, ["train/loss", "lr"])
    for alert in alerts_from_events(events): ...
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trainer.doctor import remedies

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
TAIL_ROWS = 2000  # the newest rows a tile looks back over for a series' last two finite values


def latest_with_change(frame: pd.DataFrame | None, columns: list[str]) -> dict[str, tuple[float, float | None]]:
    """{series: (newest finite value, change from the previous finite value or None)}.

    Series with no finite value yet are left out.
    """
    out: dict[str, tuple[float, float | None]] = {}
    if frame is None or frame.empty:
        return out
    for column in columns:
        if column not in frame.columns:
            continue
        # Only the tail matters; a million-row column is not scanned (nor converted).
        values = frame[column].to_numpy()[-TAIL_ROWS:]
        if values.dtype.kind in "iuf":
            tail = values.astype(float, copy=False)
        else:
            tail = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        tail = tail[np.isfinite(tail)]
        if not len(tail):
            continue
        newest = float(tail[-1])
        change = float(newest - tail[-2]) if len(tail) > 1 else None
        out[column] = (newest, change)
    return out


def alerts_from_events(events: pd.DataFrame | None) -> list[dict]:
    """Alert events as dicts, most severe first, then newest first."""
    if events is None or events.empty or "kind" not in events.columns:
        return []
    rows = events[events["kind"] == "alert"].to_dict("records")
    alerts = [{k: v for k, v in row.items() if not _missing(v)} for row in rows]
    alerts.sort(key=lambda a: (float(a.get("step") or 0), float(a.get("time") or 0)), reverse=True)
    alerts.sort(key=lambda a: SEVERITY_ORDER.get(a.get("severity"), 3))
    return alerts


def latest_alerts_by_code(alerts: list[dict]) -> list[dict]:
    """One alert per code (the first in the given order), so a repeating alert is one banner."""
    seen, out = set(), []
    for alert in alerts:
        code = alert.get("code") or alert.get("message")
        if code in seen:
            continue
        seen.add(code)
        out.append(alert)
    return out


def folded_label(alerts: list[dict]) -> str:
    """An expander's label for alerts shown folded: how many, and each one's code and severity, so
    a second critical alert is named even while folded."""
    names = ", ".join(f"{a.get('code') or 'alert'} ({a.get('severity', 'info')})" for a in alerts)
    return f"{len(alerts)} more alert{'s' if len(alerts) > 1 else ''}: {names}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def config_remedies(alert: dict) -> list[dict]:
    """The alert's remedies that a config change applies (kind config, or written before kinds
    existed): only these get a Fork or New-run button; a code change or "no action" gets none."""
    return [r for r in alert.get("remedy") or [] if isinstance(r, dict) and remedies.kind_of(r) == remedies.CONFIG]


def remedy_sets(remedy_or_alert: dict) -> list[str]:
    """A remedy's config changes as key=value pairs; given an alert, its first config remedy's."""
    if "set" not in remedy_or_alert:
        offered = config_remedies(remedy_or_alert)
        remedy_or_alert = offered[0] if offered else {}
    return [f"{key}={_yaml_scalar(value)}" for key, value in (remedy_or_alert.get("set") or {}).items()]


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_evidence(evidence: dict | None) -> str:
    """'grad/norm = 812.3 · threshold = 100' from the alert's numbers."""
    parts = []
    for key, value in (evidence or {}).items():
        if isinstance(value, float):
            parts.append(f"{key} = {value:.4g}")
        else:
            parts.append(f"{key} = {value}")
    return " · ".join(parts)


def format_remedies(alert: dict) -> list[str]:
    """One line per remedy: 'set lr=3e-4 (fork): ...', 'code change: ...' or 'no action: ...'."""
    lines = []
    for remedy in alert.get("remedy") or []:
        if not isinstance(remedy, dict):
            continue
        kind, why = remedies.kind_of(remedy), str(remedy.get("why") or "")
        if kind != remedies.CONFIG:
            lines.append(f"{'code change' if kind == remedies.CODE else 'no action'}: {why}")
            continue
        pairs = ", ".join(f"{k}={_yaml_scalar(v)}" for k, v in (remedy.get("set") or {}).items())
        # a config remedy without a start forks
        start = {remedies.NEW: " (new run)", remedies.SCRIPT: " (in your script)"}.get(remedy.get("start"), " (fork)")
        lines.append(f"set {pairs}{start}: {why}" if pairs else why)
    return lines
