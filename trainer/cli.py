"""The command line: a thin layer over trainer.runs, trainer.runs.process and trainer.training.engine.

    python -m trainer run [--config configs/shakespeare_char.yaml] [--set lr=3e-4 ...] [--background] [--quiet]
    python -m trainer list
    python -m trainer stop RUN_ID [--wait]
    python -m trainer resume RUN_ID [--set max_steps=4000]
    python -m trainer fork RUN_ID --from best --run-id NEW [--set lr=3e-4]
    python -m trainer diagnose runs/RUN_ID [--markdown | --json]
    python -m trainer import tensorboard LOGDIR [--run-id ID]     (or: import csv FILE [--run-id ID])
    python -m trainer try-remedies RUN_ID [--steps N] [--wait]     (then: try-remedies RUN_ID --report)

Every error a user can cause is a TrainerError: it is printed as one "error: ..." line on stderr
with exit code 2, never a traceback. A finished or stopped run exits 0, a failed one 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from trainer import config as C
from trainer import runs
from trainer.doctor.base import headline
from trainer.errors import RunNotFound, TrainerError
from trainer.rundir import run_format as rf
from trainer.runs import process

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _config_keys_help() -> str:
    lines = ["config keys (--set KEY=VALUE; nested keys with dots):"]
    for key, default, doc in C.describe():
        lines.append(f"  {key} = {default!r}" + (f"  # {doc}" if doc else ""))
    lines.append(
        "environment overrides (applied before --set): "
        + ", ".join(sorted(C.ENV_ALIASES))
        + ", or any top-level key in upper case (BATCH_SIZE=32)"
    )
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser, sets: bool = True, background: bool = True) -> None:
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"where run directories live (default: ${runs.RUNS_DIR_ENV}, else ./runs)",
    )
    if sets:
        p.add_argument(
            "--set",
            dest="sets",
            action="extend",
            nargs="+",
            default=[],
            metavar="KEY=VALUE",
            help="override config keys, e.g. --set lr=3e-4 model.n_layer=6 (repeatable)",
        )
        p.add_argument("--device", help="shorthand for --set device=DEVICE (auto, cpu, cuda, cuda:N, mps)")
    if background:
        p.add_argument(
            "--background",
            action="store_true",
            help="start the trainer as a background process (output in runs/<id>/train.log) and return",
        )
        p.add_argument(
            "--quiet",
            action="store_true",
            help="print no progress or alert lines while training (alerts are still in events.jsonl)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Headless PyTorch trainer that streams every run into runs/<run_id>/ for the dashboard.",
        epilog="Run `python -m trainer COMMAND --help` for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "run",
        help="start a new training run",
        description="Start a new run: resolve the config (YAML <- environment <- --set), print it, train.",
        epilog=_config_keys_help(),
        formatter_class=fmt,
    )
    p.add_argument("--config", type=Path, help="YAML config (default: configs/shakespeare_char.yaml)")
    p.add_argument("--run-id", help="name of the run directory (default: <task>-<date>-<time>)")
    _add_common(p)

    p = sub.add_parser(
        "resume",
        help="continue a stopped or crashed run from its last checkpoint",
        description="Continue RUN_ID from checkpoints/last.pt. --set changes are recorded as a config_change "
        "event; keys that change parameter shapes (" + ", ".join(C.SHAPE_KEYS) + ") cannot change.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    _add_common(p)

    p = sub.add_parser(
        "fork",
        help="start a new run from another run's checkpoint",
        description="Start run NEW from a checkpoint of RUN_ID (its parent), optionally with --set changes; "
        "keys that change parameter shapes (" + ", ".join(C.SHAPE_KEYS) + ") cannot change.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--from", dest="from_", default="last", metavar="best|last|STEP", help="which checkpoint")
    p.add_argument("--run-id", dest="new_id", required=True, metavar="NEW", help="id of the new run")
    _add_common(p)

    p = sub.add_parser(
        "stop",
        help="stop a running run (it checkpoints first)",
        description="Ask RUN_ID to stop: it finishes its step, writes a checkpoint and exits with state stopped. "
        "With --wait, wait for that and, if it has not stopped after the grace period, send SIGTERM "
        "(only to a process whose pid, create time and command line match its status.json).",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--wait", action="store_true", help="wait until the run has stopped")
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        help=f"seconds before SIGTERM with --wait (default ${runs.STOP_GRACE_ENV}, else 10)",
    )
    _add_common(p, sets=False, background=False)

    p = sub.add_parser(
        "list",
        help="list runs with state, step, best val loss and alerts",
        description="List runs, newest first. A live run whose heartbeat is stale and whose process is gone "
        "shows as crashed.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(p, sets=False, background=False)

    p = sub.add_parser(
        "diagnose",
        help="check a run directory for training problems",
        description="Run the training doctor over a run directory (ours or one written by your own script "
        "through trainer.rundir.writer) and print its alerts with numbers, causes and remedies.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a run id under --runs-dir")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the full result as JSON")
    out.add_argument("--markdown", action="store_true", help="print a Markdown report (the default)")
    _add_common(p, sets=False, background=False)

    p = sub.add_parser(
        "try-remedies",
        help="prove the doctor's remedies by rerunning: one short run per remedy plus a control",
        description="Start, in the background, one short run per config remedy of RUN_ID's most serious alert "
        "and a control without the change (each a fork of the best checkpoint or a new run from RUN_ID's "
        "config, as the remedy says; same seed, same steps). --report says, per trial, whether the alert's "
        "code still fires and how its losses compare with the control's.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run to remedy (with --report: it, or a trial group)")
    p.add_argument(
        "--steps",
        type=int,
        help="steps per trial (default: the run's max_steps; a fork goes that far past its checkpoint)",
    )
    p.add_argument("--report", action="store_true", help="print the verdicts of RUN_ID's newest trials")
    p.add_argument("--wait", action="store_true", help="wait for the trials to end, then print the report")
    p.add_argument("--again", action="store_true", help="try again when RUN_ID's remedies were tried already")
    p.add_argument("--one-by-one", action="store_true", help="run the trials one after another (implies --wait)")
    _add_common(p, sets=False, background=False)

    p = sub.add_parser(
        "import",
        help="turn TensorBoard logs or a CSV of metrics into run directories",
        description="Import another logger's runs as run directories (state finished), so the dashboard and "
        "the doctor can read them: well-known names become ours (loss -> train/loss, eval_loss -> val/loss, "
        "learning_rate -> lr, grad_norm -> grad/norm), other series keep theirs.",
    )
    kinds = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for name, what, help_ in (
        ("tensorboard", "LOGDIR", "each folder under LOGDIR with event files becomes a run (needs tensorboard)"),
        (
            "csv",
            "FILE",
            "a CSV with a step column (W&B's and TensorBoard's CSV exports too); every other numeric column becomes a series",
        ),
    ):
        k = kinds.add_parser(name, help=help_, description=f"Import {what}: {help_}.")
        k.add_argument("path", type=Path, metavar=what)
        k.add_argument("--run-id", help="id of the new run (several TensorBoard runs: the prefix of their ids)")
        _add_common(k, sets=False, background=False)
    return parser


# --- commands -----------------------------------------------------------------------------------


def _sets(args) -> list[str]:
    return list(args.sets) + ([f"device={args.device}"] if args.device else [])


def _finished(run_id: str, state: str) -> int:
    if runs.is_main_rank():
        print(f"run {run_id}: {state}")
    return EXIT_OK if state in (rf.FINISHED, rf.STOPPED) else EXIT_FAILED


def _print_changes(changes: dict) -> None:
    for key, (old, new) in changes.items():
        print(f"config change: {key}: {old!r} -> {new!r}")


def _started(run_id: str, pid: int, runs_dir: Path) -> int:
    print(f"started {run_id} in the background (pid {pid}); log: {runs_dir / run_id / rf.LOG_FILE}")
    print(f"watch it with `python -m trainer list`, stop it with `python -m trainer stop {run_id}`")
    return EXIT_OK


def _print_config(run_id: str, cfg: C.Config) -> None:
    print(f"# run {run_id}: resolved config")
    print(C.to_yaml(cfg), end="", flush=True)


def cmd_run(args, runs_dir: Path) -> int:
    cfg = runs.resolve_new(args.config, _sets(args))
    main_rank = runs.is_main_rank()
    if not args.run_id and not main_rank:
        # Each torchrun process would make up its own id; only rank 0 writes, but all must agree.
        args.run_id = "rank-not-writing"
    run_id = args.run_id or runs.new_run_id(cfg.task, runs_dir)
    if args.background:
        # start_new checks the directory and the data, then launches; the child resolves the same
        # arguments once more, and its writer is the last word on the directory.
        run_id, pid = process.start_new(args.config, _sets(args), runs_dir, run_id, cfg=cfg)
        _print_config(run_id, cfg)
        return _started(run_id, pid, runs_dir)
    if main_rank:
        runs.ensure_new_run(runs_dir, run_id)  # refused before the config is printed
        _print_config(run_id, cfg)
    from trainer.training import engine  # lazy for start-up cost alone: torch takes seconds to import

    state = engine.train(cfg, runs_dir, run_id, mode="new", quiet=args.quiet)
    return _finished(run_id, state)


def cmd_resume(args, runs_dir: Path) -> int:
    main_rank = runs.is_main_rank()
    prepared = runs.prepare_resume(runs_dir, args.run_id, _sets(args), check_exclusive=main_rank)
    cfg, checkpoint, changes = prepared.config, prepared.checkpoint, prepared.changes
    if main_rank:
        for name, damage in prepared.skipped:
            print(f"checkpoint {name} is damaged ({damage}); passed over", file=sys.stderr)
        if prepared.skipped:
            print(f"resuming from {rf.CHECKPOINT_DIR}/{checkpoint.name}, the newest whole checkpoint")
        _print_changes(changes)
    if args.background:
        pid = process.start_resume(runs_dir, args.run_id, _sets(args), prepared=prepared)
        return _started(args.run_id, pid, runs_dir)
    from trainer.training import engine  # lazy for start-up cost alone: torch takes seconds to import

    state = engine.train(
        cfg, runs_dir, args.run_id, mode="resume", checkpoint=checkpoint, changes=changes, quiet=args.quiet
    )
    return _finished(args.run_id, state)


def cmd_fork(args, runs_dir: Path) -> int:
    main_rank = runs.is_main_rank()
    prepared = runs.prepare_fork(runs_dir, args.run_id, args.from_, args.new_id, _sets(args), check_exclusive=main_rank)
    cfg, checkpoint, changes = prepared.config, prepared.checkpoint, prepared.changes
    if main_rank:
        _print_changes(changes)
    if args.background:
        pid = process.start_fork(runs_dir, args.run_id, args.from_, args.new_id, _sets(args), prepared=prepared)
        return _started(args.new_id, pid, runs_dir)
    from trainer.training import engine  # lazy for start-up cost alone: torch takes seconds to import

    state = engine.train(
        cfg,
        runs_dir,
        args.new_id,
        mode="fork",
        checkpoint=checkpoint,
        parent=args.run_id,
        changes=changes,
        quiet=args.quiet,
    )
    return _finished(args.new_id, state)


def cmd_stop(args, runs_dir: Path) -> int:
    if not args.wait:
        runs.request_stop(runs_dir, args.run_id)
        print(f"stop requested: {args.run_id} stops after its current step and checkpoints")
        return EXIT_OK
    grace = runs.stop_grace_s() if args.grace is None else args.grace
    state = runs.stop(runs_dir, args.run_id, grace_s=grace)
    if state in rf.LIVE_STATES:
        print(
            f"run {args.run_id} is still {state} after {grace:g} s; SIGTERM goes only to a process whose pid, "
            "create time and command line match its status.json",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"run {args.run_id}: {state}")
    return EXIT_OK


def _age(ts) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def format_table(infos: list[runs.RunInfo]) -> str:
    """The `list` table: id, task, state, step, best val loss, alerts, last update."""
    header = ("RUN ID", "TASK", "STATE", "STEP", "BEST VAL", "ALERTS", "UPDATED")
    rows = [header]
    for i in infos:
        step = f"{i.step}/{i.max_steps}" if i.max_steps else str(i.step)
        best = f"{i.best_val_loss:.4f}" if i.best_val_loss is not None else "-"
        alerts = ", ".join(f"{n} {sev}" for sev, n in reversed(i.alert_counts.items()) if n) or "-"
        rows.append((i.run_id, i.task or "-", i.state, step, best, alerts, _age(i.updated)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def cmd_list(args, runs_dir: Path) -> int:
    infos = runs.list_runs(runs_dir)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=1))
    elif not infos:
        print(f"no runs in {runs_dir}; start one with `python -m trainer run`")
    else:
        print(format_table(infos))
        for info in infos:
            for note in info.skipped:
                print(f"{info.run_id}: {note}")
    return EXIT_OK


def cmd_diagnose(args, runs_dir: Path) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        if os.sep in args.run_dir or args.run_dir.startswith("."):  # meant as a path, not a run id
            raise RunNotFound(f"no run directory {args.run_dir}; `python -m trainer list` shows the runs")
        run_dir = rf.existing_run_path(runs_dir, args.run_dir)
    from trainer import doctor  # lazy for start-up cost alone: numpy (~0.1 s) only this command needs

    result = doctor.diagnose(run_dir)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(doctor.to_markdown(result))
    return EXIT_OK


def cmd_try_remedies(args, runs_dir: Path) -> int:
    from trainer.runs import trials  # lazy for start-up cost alone: the doctor (numpy) only this command needs

    if args.report:
        name = trials.latest_group(runs_dir, args.run_id)
        print(trials.format_report(name, trials.report(runs_dir, name)))
        return EXIT_OK
    group = trials.start_trials(runs_dir, args.run_id, args.steps, args.again, one_by_one=args.one_by_one)
    print(f"started {len(group.trials)} trials of {args.run_id}'s {group.code} alert, {group.steps} steps each:")
    for t in group.trials:
        change = ", ".join(f"{k}={v}" for k, v in t.sets.items()) or "no change"
        print(f"  {t.run_id}: {t.role}, {t.start}, {change}")
    if not (args.wait or args.one_by_one):
        print(f"read the verdicts with `python -m trainer try-remedies {args.run_id} --report`")
        return EXIT_OK
    trials.wait(runs_dir, group.name)
    print(trials.format_report(group.name, trials.report(runs_dir, group.name)))
    return EXIT_OK


def cmd_import(args, runs_dir: Path) -> int:
    from trainer.runs import importing  # lazy for start-up cost alone: only this command needs it

    if args.source == "tensorboard":
        imported = importing.read_tensorboard(args.path, args.run_id)
    else:
        imported = [importing.read_csv(args.path, args.run_id)]
    for run in importing.write_runs(runs_dir, imported):
        samples = f", {len(run.samples)} samples" if run.samples else ""
        print(f"imported {run.run_id}: {len(run.rows)} steps, {len(run.series)} series{samples} from {run.source}")
        for alert in run.alerts:
            if alert.get("severity") != "info":
                print(f"  {alert['severity']} {headline(alert)}: {alert['message']}")
    print(f"see them with `python -m trainer list`, check one with `python -m trainer diagnose {imported[0].run_id}`")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_resume,
    "fork": cmd_fork,
    "stop": cmd_stop,
    "list": cmd_list,
    "diagnose": cmd_diagnose,
    "import": cmd_import,
    "try-remedies": cmd_try_remedies,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs_dir = Path(args.runs_dir).resolve() if args.runs_dir else runs.default_runs_dir()
    try:
        return COMMANDS[args.command](args, runs_dir)
    except TrainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
