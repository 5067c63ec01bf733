"""What a reader left out of a run, one sentence each. The reader's snapshot (trainer.rundir.reader),
the doctor's report and every dashboard page say it in these words.

    notes(malformed={"metrics.jsonl": 2}, status_unreadable=True)
    # ("skipped 2 unreadable lines in metrics.jsonl", "skipped status.json: it is empty or not a JSON object")
"""

from __future__ import annotations

from pathlib import Path

from trainer.rundir import run_format as rf
from trainer.rundir.status import read_config, read_status


def notes(
    malformed: dict[str, int] | None = None,
    torn: dict[str, int] | None = None,
    status_unreadable: bool = False,
    config_unreadable: bool = False,
) -> tuple[str, ...]:
    """malformed: lines skipped per file; torn: bytes of an incomplete last line per file (left out
    for good: the run is not live, so nobody will complete it)."""
    out = []
    for name, n in (malformed or {}).items():
        if n:
            out.append(f"skipped {n} unreadable line{'s' if n != 1 else ''} in {name}")
    for name, n in (torn or {}).items():
        if n:
            out.append(f"left out an incomplete last line of {name} ({n} bytes)")
    if status_unreadable:
        out.append(f"skipped {rf.STATUS_FILE}: it is empty or not a JSON object")
    if config_unreadable:
        out.append(f"skipped {rf.CONFIG_FILE}: it is not a YAML mapping")
    return tuple(out)


def status_unreadable(run_dir: str | Path) -> bool:
    """status.json is there but cannot be read (empty, not JSON, not an object)."""
    return (Path(run_dir) / rf.STATUS_FILE).is_file() and read_status(run_dir) is None


def config_unreadable(run_dir: str | Path) -> bool:
    """config.yaml is there but cannot be read (not YAML, not a mapping)."""
    return (Path(run_dir) / rf.CONFIG_FILE).is_file() and read_config(run_dir) is None
