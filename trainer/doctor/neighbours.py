"""Which of our own runs shared the machine with a slowed-down run.

The slowdown detector sees one run's numbers; whether the job that took its cores was one of ours
is in the runs directory beside it. A run whose status.json says it was live on the same host at
some point between the slowdown's baseline and the alert is named in the alert, with a remedy
that fits: with threads: auto each of our runs takes an equal share of the cores, so the speed
comes back when that run ends, or when one of them is stopped. Where one of them was still live at
the alert and other processes took the cores, it explains the slowdown: the alert is info, not a
warning (the user started that run; nothing is wrong with this one). An imported log (status.json
"imported_from") is neither named nor names others: its host and times are the import's.

    alert = name_our_competitors(alert, run_dir)   # unchanged unless it is a slowdown with such runs
"""

from __future__ import annotations

import socket
from pathlib import Path

from trainer.doctor.knobs import NONE, kind_of, no_action
from trainer.doctor.system import FREE_THE_CORES, OTHER_PROCESSES
from trainer.rundir import run_format as rf
from trainer.rundir.sharing import runs_on_host
from trainer.rundir.status import read_status


def competitors(run_dir: str | Path, since: float, until: float) -> list[dict]:
    """Our other runs on this run's host that were live at some time in [since, until]:
    [{"run_id", "started", "updated"}], in order of start."""
    run_dir = Path(run_dir)
    own = read_status(run_dir) or {}
    if own.get(rf.STATUS_IMPORTED_FROM):  # its host and times are the import's, not the training's
        return []
    host = own.get("host") or socket.gethostname()
    found = []
    for sibling, status in runs_on_host(run_dir.parent, host, exclude=run_dir.name):
        if status.get("host") != host:  # a run that does not say where it ran is not named
            continue
        if status.get(rf.STATUS_IMPORTED_FROM):  # a log imported here, never a process on these cores
            continue
        started, updated = status.get("started"), status.get("updated")
        if (
            isinstance(started, (int, float))
            and isinstance(updated, (int, float))
            and started <= until
            and updated >= since
        ):
            found.append({"run_id": sibling.name, "started": started, "updated": updated})
    return sorted(found, key=lambda r: r["started"])


def name_our_competitors(alert: dict, run_dir: str | Path) -> dict:
    """A slowdown alert with our own competing runs named in its message and evidence."""
    evidence = alert.get("evidence") or {}
    since, until = evidence.get("baseline_time"), evidence.get("time")
    if alert.get("code") != "slowdown" or not isinstance(since, (int, float)) or not isinstance(until, (int, float)):
        return alert
    found = competitors(run_dir, since, until)
    if not found:
        return alert
    names = ", ".join(r["run_id"] for r in found)
    ours = f"our own run{'s' if len(found) > 1 else ''} {names}"
    comes_back = "with threads: auto each run takes an equal share of the cores, so the speed comes back when " + (
        "they end (or stop one with `python -m trainer stop RUN`)"
        if len(found) > 1
        else f"it ends (or stop it: `python -m trainer stop {names}`)"
    )
    message = alert["message"]
    if f"({OTHER_PROCESSES})" in message:  # other processes took the cores: ours are named among them
        message = message.replace(f"({OTHER_PROCESSES})", f"({ours} among them)").replace(FREE_THE_CORES, comes_back)
    else:
        message = f"{message}; {ours} shared this machine meanwhile: {comes_back}"
    # No config change makes a shared machine faster: the remedy says so, ahead of any other.
    wait = no_action(
        f"{ours} shared this machine; the speed comes back when "
        + ("they end, or stop one" if len(found) > 1 else "it ends, or stop it")
    )
    remedy = [wait, *(r for r in alert.get("remedy") or [] if kind_of(r) != NONE)]
    evidence = {**evidence, "our_runs": [r["run_id"] for r in found]}
    named = {**alert, "message": message, "evidence": evidence, "remedy": remedy}
    # A run of ours still live when the alert came (its heartbeat rewrites status.json every few
    # seconds: updated within STALE_AFTER_SECONDS of the alert's row), with other processes taking
    # the cores, explains it: the user started that run (a fork beside its parent) and nothing is
    # wrong with this one, so it is said, not warned of (a parent showed "1 warning" for its own
    # fork). One that ended before leaves a slowdown it no longer explains: still a warning.
    if evidence.get("competing") and any(r["updated"] >= until - rf.STALE_AFTER_SECONDS for r in found):
        named["severity"] = "info"
    return named
