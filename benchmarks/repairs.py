"""The repair table (issue 14): run every failure preset, let the doctor name it, try its remedies
(trainer.runs.trials: one short run per config remedy plus a control, same seed, same steps), and
report per remedy whether the failure still fires and how the losses compare with the control.

    python benchmarks/repairs.py                              # every preset; prints the markdown table
    python benchmarks/repairs.py --presets text_diffusion_collapse --modes together one_by_one

Figures: the top remedy fixes its failure on each preset whose remedies are config changes (the
dead branch's is a code change: reported, not run); no remedy makes its failure measurably worse
(fires where the control did not, or losses more than trials.WORSE_BY above the control's); the
wall time of text_diffusion_collapse's trials (3 remedies + 2 controls), all started together
(sharing the cores through threads: auto) against one after another (--modes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.doctor import diagnose
from trainer.doctor import remedies as R
from trainer.runs import trials

ROOT = Path(__file__).resolve().parents[1]
# preset -> (steps per trial, the resume that sets off the failure, if any)
PRESETS = {
    "text_diffusion_collapse": (150, None),
    "regression_variance_collapse": (200, None),
    "regression_val_below_train": (150, None),
    "discrete_diffusion_curriculum": (200, None),
    "shakespeare_char_spike": (100, ({"LEARNING_RATE": "0.03"}, ["max_steps=350"])),
    "regression_dead_branch": (0, None),
}


def trainer(args: list[str], runs_dir: Path, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "trainer", *args, "--runs-dir", str(runs_dir), "--quiet"]
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL)


def run_preset(preset: str, runs_dir: Path, threads: str) -> str:
    # threads goes into the run's config, so its trials (forks and new runs from that config) keep it
    trainer(["run", "--config", f"configs/{preset}.yaml", "--run-id", preset, "--set", f"threads={threads}"], runs_dir)
    resume = PRESETS[preset][1]
    if resume:
        env, sets = resume
        trainer(["resume", preset, "--set", *sets], runs_dir, env)
    return preset


def try_preset(preset: str, runs_dir: Path, one_by_one: bool, again: bool = False, report_only: bool = False) -> dict:
    """The preset's alert, its remedies and (for config remedies) the trials' rows and wall time."""
    serious = [a for a in diagnose(runs_dir / preset)["alerts"] if a["severity"] != "info"]
    alert = sorted(serious, key=lambda a: (a["severity"] != "critical", a["step"]))[0] if serious else None
    out = {"preset": preset, "alert": alert, "rows": [], "seconds": None}
    if alert is None or not any(R.kind_of(r) == R.CONFIG for r in alert["remedy"]):
        return out
    if report_only:  # the trials already run here: judge them again
        out["rows"] = trials.report(runs_dir, trials.latest_group(runs_dir, preset))
        return out
    start = time.perf_counter()
    group = trials.start_trials(runs_dir, preset, PRESETS[preset][0], again=again, one_by_one=one_by_one)
    trials.wait(runs_dir, group.name)
    out["seconds"] = time.perf_counter() - start
    out["rows"] = trials.report(runs_dir, group.name)
    return out


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-"


def table(results: list[dict]) -> str:
    lines = [
        "| preset | alert (step) | remedy | kind, start | code still fires | train / val loss (control) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        alert = res["alert"]
        if alert is None:
            lines.append(f"| {res['preset']} | none | | | | | no alert to remedy |")
            continue
        head = f"{alert['code']} ({alert['step']})"
        if not res["rows"]:
            remedy = alert["remedy"][0] if alert["remedy"] else {"why": "no remedy"}
            lines.append(
                f"| {res['preset']} | {head} | {remedy['why'][:140]}... | {R.kind_of(remedy)} | | | not a run |"
            )
            continue
        controls = {r.start: r for r in res["rows"] if r.role == trials.CONTROL}
        for row in res["rows"]:
            control = controls.get(row.start)
            losses = f"{_fmt(row.train_loss)} / {_fmt(row.val_loss)}"
            if row.role == trials.REMEDY and control:
                losses += f" ({_fmt(control.train_loss)} / {_fmt(control.val_loss)})"
            name = "control" if row.role == trials.CONTROL else f"`{row.change}`"
            fires = "-" if row.fires is None else ("yes" if row.fires else "no")
            lines.append(
                f"| {res['preset']} | {head} | {name} | config, {row.start} | {fires} | {losses} | {row.verdict} |"
            )
    return "\n".join(lines)


def summary(results: list[dict]) -> list[str]:
    out = []
    tried = [r for r in results if r["rows"]]
    top_fixed = sum(
        1 for r in tried if next(x for x in r["rows"] if x.role == trials.REMEDY).verdict.startswith("fixed")
    )
    out.append(f"top remedy fixed {top_fixed} of {len(tried)} presets with config remedies")
    worse = [
        (r["preset"], x.change, x.verdict)
        for r in tried
        for x in r["rows"]
        if x.role == trials.REMEDY and ("worse" in x.verdict)
    ]
    worse += [
        (r["preset"], x.change, "fires where its control did not")
        for r in tried
        for x in r["rows"]
        if x.role == trials.REMEDY
        and x.fires
        and not any(c.fires for c in r["rows"] if c.role == trials.CONTROL and c.start == x.start)
    ]
    out.append(f"remedies measurably worse than their control: {worse or 'none'}")
    for r in results:
        if r["seconds"] is not None:
            out.append(f"{r['preset']}: {len(r['rows'])} trial runs in {r['seconds']:.0f} s wall")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["together"],
        choices=["together", "one_by_one"],
        help="how trials share the machine; several: each in turn, on the same preset runs",
    )
    parser.add_argument("--runs-dir", type=Path, help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--report-only", action="store_true", help="judge the trials already in --runs-dir again")
    parser.add_argument(
        "--threads",
        default="1",
        help="the runs' threads (default 1: on a machine shared with other jobs, "
        "OpenMP threads that outnumber the free cores spin; auto is the trainer's own default)",
    )
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="repairs-"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    print(f"runs in {runs_dir}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    for preset in args.presets:
        if not (runs_dir / preset).exists():
            start = time.perf_counter()
            run_preset(preset, runs_dir, args.threads)
            print(f"{preset}: ran in {time.perf_counter() - start:.0f} s", flush=True)
    if args.report_only:
        results = [try_preset(p, runs_dir, False, report_only=True) for p in args.presets]
        print(table(results) + "\n\n" + "\n".join(summary(results)))
        return
    for mode in args.modes:
        results = [try_preset(p, runs_dir, mode == "one_by_one", again=True) for p in args.presets]
        print(f"\n## trials {mode} (load average now {os.getloadavg()[0]:.1f})\n", flush=True)
        print(table(results))
        print("\n" + "\n".join(summary(results)), flush=True)


if __name__ == "__main__":
    main()
