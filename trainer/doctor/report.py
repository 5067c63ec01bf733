"""The diagnosis as a markdown report in the spirit of the incident reports in ../shared/seeds:
summary, findings with tables of the numbers, likely causes, action items (fork commands), and
what was checked and found healthy.

    python -m trainer diagnose runs/<run_id> --markdown
"""

from __future__ import annotations

import json

from trainer.doctor import remedies
from trainer.doctor.base import SEVERITY_RANK
from trainer.doctor.registry import DETECTORS

LABELS = {
    (remedies.CONFIG, remedies.FORK): "config change, as a fork",
    (remedies.CONFIG, remedies.NEW): "config change, as a new run",
    (remedies.CONFIG, remedies.SCRIPT): "config change, in the script that wrote the run",
    (remedies.CONFIG, None): "config change, as a fork",
    (remedies.CODE, None): "code change",
    (remedies.NONE, None): "no action",
}
ICON = {"critical": "❌", "warning": "⚠️", "info": "ℹ️"}
# Each detector carries its title and likely cause (trainer/doctor/registry.py).
TITLES = {d.code: d.title for d in DETECTORS}
CAUSES = {d.code: d.cause for d in DETECTORS}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(map(str, value[:6]))
        return shown + (f" (+{len(value) - 6})" if len(value) > 6 else "")
    return str(value).replace("|", "\\|")


def to_markdown(result: dict) -> str:
    run, alerts = result["run"], result["alerts"]
    run_id = run.get("run_id") or "RUN"
    lines = [f"# Training diagnosis: {run_id}", ""]
    facts = [f"**State**: {run.get('state') or 'unknown'}", f"**Step**: {run.get('step')}"]
    if run.get("max_steps"):
        facts[-1] += f" of {run['max_steps']}"
    if run.get("task"):
        facts.append(f"**Task**: {run['task']}")
    facts.append(f"**Metrics rows**: {run.get('metrics_rows', 0)}")
    lines += ["  \n".join(facts), "", "## Summary", "", result["summary"], ""]
    if run.get("skipped"):
        lines += ["Left out, unreadable: " + "; ".join(run["skipped"]) + ".", ""]
    ordered = sorted(alerts, key=lambda a: (-SEVERITY_RANK[a["severity"]], a["step"] or 0))
    if ordered:
        lines += ["## Findings", ""]
        for i, alert in enumerate(ordered, 1):
            lines += _finding(i, alert)
        lines += ["## Likely causes", ""]
        for code in dict.fromkeys(a["code"] for a in ordered if a["severity"] != "info"):
            lines.append(f"- **{code}**: {CAUSES.get(code, '')}")
        lines.append("")
        actions, seen = [], set()
        for alert in (a for a in ordered if a["severity"] != "info"):
            for remedy in alert["remedy"]:
                key = json.dumps([remedy["set"], remedy.get("start"), remedy["why"] if not remedy["set"] else ""])
                if key not in seen:  # two findings often share a fix: list it once, under the first
                    seen.add(key)
                    actions.append((alert, remedy))
        if actions:
            lines += [
                "## Action items",
                "",
                "Ranked per finding. A config change forks the best checkpoint or starts a new run, as it says; "
                "a code change says what to look for:",
                "",
            ]
            for n, (alert, remedy) in enumerate(actions, 1):
                kind = remedies.kind_of(remedy)
                lines += [f"{n}. ({alert['code']}, {LABELS[kind, remedy.get('start')]}) {remedy['why']}", ""]
                command = remedies.command(run_id, remedy, run.get("dir"))
                if command:
                    lines += ["   ```", f"   {command}", "   ```", ""]
    lines += ["## What was checked and found healthy", ""]
    if result["checked"]:
        lines += [f"- ✅ **{c['code']}**: {c['reason']}" for c in result["checked"]]
    else:
        lines.append("- nothing yet (too little data)")
    if result.get("unchecked"):
        lines += ["", f"Not checked (no data for them): {', '.join(result['unchecked'])}."]
    if run.get("sample_stride", 1) > 1:
        lines += [
            "",
            f"Note: of {run['metrics_rows']} metrics rows, every {run['sample_stride']}th was read, plus "
            "every eval and every non-finite row.",
        ]
    return "\n".join(lines) + "\n"


def _finding(i: int, alert: dict) -> list[str]:
    title = TITLES.get(alert["code"], alert["code"])
    out = [
        f"### {i}. {ICON.get(alert['severity'], '')} {title} (`{alert['code']}`, {alert['severity']}, "
        f"step {alert['step']})",
        "",
        alert["message"] + ".",
        "",
    ]
    evidence = {k: v for k, v in alert.get("evidence", {}).items() if v is not None and not isinstance(v, dict)}
    if evidence:
        out += ["| evidence | value |", "|---|---|"]
        out += [f"| {k} | {_cell(v)} |" for k, v in evidence.items()]
        out.append("")
    return out
