"""Diagnose a run directory after the fact: the online detectors replayed over its files.

    python -m trainer diagnose runs/<run_id> [--json] [--markdown]

    from trainer.doctor import diagnose, to_markdown
    print(to_markdown(diagnose("runs/my-run")))

Works on running, stopped, finished and crashed runs, and on directories written by other programs
with any subset of the files (docs/run-format.md). The result's schema is in docs/doctor.md.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from trainer.doctor.base import SEVERITY_RANK
from trainer.doctor.neighbours import name_our_competitors
from trainer.doctor.online import OnlineDoctor, in_step_order
from trainer.doctor.runfiles import metrics_records, read_records
from trainer.errors import RunNotFound
from trainer.rundir import run_format as rf
from trainer.rundir.skipped import config_unreadable, status_unreadable
from trainer.rundir.skipped import notes as skipped_notes
from trainer.rundir.status import read_config, read_status, run_state, written_by_trainer

RESTART_EVENTS = ("resume", "fork", "config_change")


def diagnose(run_dir) -> dict:
    """{"run": {...}, "alerts": [...], "summary": str, "checked": [{"code", "reason"}], "unchecked": [codes]}."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunNotFound(f"no run directory {run_dir}; `python -m trainer list` shows the runs")
    config = read_config(run_dir)
    status = read_status(run_dir)
    # A script's own loop (trainer.init) wrote its own config: not ours to read as our schema.
    ours = (status or {}).get(rf.STATUS_WRITER) != rf.WRITER_API
    unreadable: Counter = Counter()
    doctor, rows, stride = replay(
        run_dir, config, schema=ours, trainer_wrote=written_by_trainer(status), skipped=unreadable
    )
    alerts = sorted(doctor.alerts, key=lambda a: a["step"] if a["step"] is not None else -1)
    alerts = [name_our_competitors(alert, run_dir) for alert in alerts]
    run = {
        "run_id": (status or {}).get("run_id", run_dir.name),
        "dir": str(run_dir),
        "state": _state(run_dir, status),
        "task": (status or {}).get("task") or (config or {}).get("task"),
        "step": doctor.last_step,
        "max_steps": (status or {}).get("max_steps") or (config or {}).get("max_steps"),
        "metrics_rows": rows,
        "sample_stride": stride,
        "files": sorted(p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")),
        "has_config": config is not None,
    }
    live = (status or {}).get("state") in rf.LIVE_STATES
    torn = {} if live else {name: _torn_bytes(run_dir / name) for name in rf.JSONL_FILES}
    run["skipped"] = list(skipped_notes(unreadable, torn, status_unreadable(run_dir), config_unreadable(run_dir)))
    return {
        "run": run,
        "alerts": alerts,
        "summary": _summary(run, alerts),
        "checked": doctor.checked(),
        "unchecked": doctor.unchecked(),
    }


def replay(
    run_dir,
    config: dict | None = None,
    schema: bool = True,
    trainer_wrote: bool = True,
    skipped: Counter | None = None,
    until: int | None = None,
) -> tuple[OnlineDoctor, int, int]:
    """A fresh OnlineDoctor fed the run's metrics, grads and samples in step order, with the last
    resume/fork/config change noted: (doctor, metrics rows in the file, sample stride). until: only
    the records up to that step (where a fork of the run starts).

    A resumed trainer can start its online doctor from this, so that a failure right after the
    resume is judged against the run's history instead of waiting for a new window to fill; its
    `alerts` are then the ones already reported, and `observe` returns only new ones. Unreadable
    lines are counted per file in `skipped`.
    """
    run_dir = Path(run_dir)
    doctor = OnlineDoctor(config, schema, trainer_wrote)
    events = read_records(run_dir / rf.EVENTS_FILE, skipped)
    restarts = [e["step"] for e in events if e.get("kind") in RESTART_EVENTS and (until is None or e["step"] <= until)]
    if restarts:
        doctor.note_restart(max(restarts))
    rows, stride = feed(doctor, run_dir, until=until, skipped=skipped)
    return doctor, rows, stride


def feed(
    doctor: OnlineDoctor, run_dir, after: int | None = None, until: int | None = None, skipped: Counter | None = None
) -> tuple[int, int]:
    """Observe run_dir's records with after < step <= until, in step order: (metrics rows, stride)."""
    run_dir = Path(run_dir)
    metrics, rows, stride = metrics_records(run_dir / rf.METRICS_FILE, skipped)
    grads = read_records(run_dir / rf.GRADS_FILE, skipped)
    samples = read_records(run_dir / rf.SAMPLES_FILE, skipped)
    for kind, record in in_step_order({"metrics": metrics, "grads": grads, "samples": samples}):
        step = record["step"]
        if (after is None or step > after) and (until is None or step <= until):
            doctor.observe(kind, record)
    return rows, stride


def continued(parent_dir, fork_dir, step: int) -> list[dict]:
    """The alerts of fork_dir, a fork of parent_dir at `step`, judged as the parent's run continued
    (as a resume is): the detectors first see the parent's records up to the fork, so a failure in
    the fork's first rows is judged against that history. Returns only the alerts after `step`."""
    config = read_config(fork_dir)
    doctor, _, _ = replay(parent_dir, config, until=step)
    doctor.note_restart(step)
    before = len(doctor.alerts)
    feed(doctor, fork_dir, after=step)
    return doctor.alerts[before:]


def _torn_bytes(path: Path) -> int:
    """Bytes after the last newline: an incomplete last line, left out."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - (1 << 16)))
            tail = f.read()
    except OSError:
        return 0
    return len(tail) - tail.rfind(b"\n") - 1 if b"\n" in tail or size < (1 << 16) else 0


def _state(run_dir: Path, status: dict | None) -> str | None:
    return None if status is None else run_state(run_dir)


def _summary(run: dict, alerts: list[dict]) -> str:
    where = f"run {run['run_id']}" + (f" ({run['state']})" if run["state"] else "")
    at = f" at step {run['step']}" if run["step"] is not None else ""
    if run["metrics_rows"] == 0 and run["step"] is None:
        return f"{where}: nothing to diagnose yet (no metrics, grads or samples)."
    serious = [a for a in alerts if a["severity"] != "info"]
    if not serious:
        infos = f" ({len(alerts)} info note{'s' * (len(alerts) != 1)})" if alerts else ""
        return f"{where}{at}: healthy, no warning or critical finding{infos}."
    counts = {s: sum(1 for a in serious if a["severity"] == s) for s in ("critical", "warning")}
    worst = max(serious, key=lambda a: (SEVERITY_RANK[a["severity"]], -(a["step"] or 0)))
    parts = [f"{n} {s}{'s' * (n > 1 and s == 'warning')}" for s, n in counts.items() if n]
    return f"{where}{at}: {', '.join(parts)}. Most serious: {worst['code']} - {worst['message']}."
