"""Scoring a diagnosis against a run's labels, and running the suite as a benchmark does.

    results = run_suite(tmp_dir, seeds=range(100), names=NAMES)
    summary = by_code(results)

detected: an alert of the expected code at warning or critical, at or after the onset.
delay: first such alert minus the onset, in log intervals, for a sudden failure; minus the
    evidence step, as a fraction of the run, for a slow one (negative: earlier than the evidence).
delay_rows: a sudden failure's delay in rows of the series that shows it (evals for val-loss
    failures, samples for token collapse, probes for dead parameters, else train rows).
false alarms: warning/critical alerts of any code on a healthy run, or before the onset of a
    failing one. Info alerts never count.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from trainer.doctor.diagnose import diagnose
from trainer.doctor.wildsuite.catalogue import make
from trainer.doctor.wildsuite.run import WildRun, write_run

SERIOUS = ("warning", "critical")


def evaluate(run: WildRun, alerts: list[dict]) -> dict:
    """The score of one run: {name, seed, code, sudden, detected, delay, false_alarms, hit}."""
    serious = [a for a in alerts if a.get("severity") in SERIOUS]

    def step(alert: dict) -> int:
        return alert["step"] if isinstance(alert.get("step"), int) else -1

    result = {"name": run.name, "seed": run.seed, "code": run.code, "sudden": run.sudden}
    if run.code is None:
        return {**result, "detected": None, "delay": None, "delay_rows": None, "false_alarms": serious, "hit": None}
    false_alarms = [a for a in serious if step(a) < run.onset]
    hits = [a for a in serious if a.get("code") == run.code and step(a) >= run.onset]
    if not hits:
        return {
            **result,
            "detected": False,
            "delay": None,
            "delay_rows": None,
            "false_alarms": false_alarms,
            "hit": None,
        }
    first = min(hits, key=step)
    delay_rows = None
    if run.sudden:
        delay = (step(first) - run.onset) / run.log_interval
        delay_rows = (step(first) - run.onset) / max(1, run.seen_every or run.log_interval)
    else:
        delay = (step(first) - run.evidence) / run.max_steps
    result.update(detected=True, delay=delay, delay_rows=delay_rows, false_alarms=false_alarms, hit=first)
    return result


def run_suite(runs_dir, seeds, names, make=make, diagnose=diagnose) -> list[dict]:
    """Make, write, diagnose and score every (name, seed); runs_dir must not hold these runs yet."""
    results = []
    for name in names:
        for seed in seeds:
            run = make(name, seed)
            path = write_run(run, Path(runs_dir), f"{name}-{seed}")
            results.append(evaluate(run, diagnose(path)["alerts"]))
    return results


def by_code(results: list[dict]) -> dict:
    """Per expected code (None: healthy): runs, recall, false alarms per 100 healthy runs (healthy
    only), median delay (sudden and slow apart), and the name-seed of each miss and false alarm."""
    table: dict = defaultdict(
        lambda: {"runs": 0, "detected": 0, "sudden": [], "rows": [], "slow": [], "misses": [], "false": []}
    )
    for r in results:
        row = table[r["code"]]
        row["runs"] += 1
        tag = f"{r['name']}-{r['seed']}"
        if r["false_alarms"]:
            row["false"].append(tag + ":" + ",".join(sorted({a["code"] for a in r["false_alarms"]})))
        if r["code"] is None:
            continue
        if r["detected"]:
            row["detected"] += 1
            row["sudden" if r["sudden"] else "slow"].append(r["delay"])
            if r["sudden"]:
                row["rows"].append(r["delay_rows"])
        else:
            row["misses"].append(tag)
    out = {}
    for code, row in table.items():
        out[code] = {
            "runs": row["runs"],
            "recall": None if code is None else row["detected"] / row["runs"],
            "false_alarm_runs": len(row["false"]),
            "median_delay_sudden": statistics.median(row["sudden"]) if row["sudden"] else None,
            "median_delay_rows": statistics.median(row["rows"]) if row["rows"] else None,
            "median_delay_slow": statistics.median(row["slow"]) if row["slow"] else None,
            "misses": row["misses"],
            "false": row["false"],
        }
    return out
