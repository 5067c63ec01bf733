"""Remedy trials: prove a remedy by rerunning. One short run per config remedy of a run's alert,
plus a control without the change, started as each remedy says (a fork of the best checkpoint or a
new run from the run's config), with the same seed and the same number of steps.

    python -m trainer try-remedies RUN [--steps N] [--wait]   # starts them in the background
    python -m trainer try-remedies RUN --report                # per trial: does the code still fire?

    group = start_trials(runs_dir, "spike")       # TrialGroup: its runs are ordinary runs
    rows = report(runs_dir, group.name)           # [TrialRow]: verdict, losses against the control

Trials are ordinary runs (listed, watched, stopped like any other); each trial run's directory
also holds trial.json (run_format.TRIAL_FILE) naming its group, parent, the alert's code, its role
("control" or "remedy") and its remedy. They are started together and share the cores through
threads: auto (docs/run-format.md, sharing); benchmarks/repairs.py measures that against one by one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from trainer import config as C
from trainer.doctor import continued, diagnose
from trainer.doctor import remedies as R
from trainer.doctor.base import SEVERITY_RANK
from trainer.errors import ConfigError, RunStateError, TrainerError
from trainer.rundir import run_format as rf
from trainer.rundir.files import atomic_write_text
from trainer.rundir.jsonl import read_records
from trainer.rundir.status import read_config, read_status, run_state, written_by_trainer
from trainer.runs import process
from trainer.runs.resume import available_checkpoints

CONTROL, REMEDY = "control", "remedy"
# A trial's losses count as worse than its control's beyond this (the seed noise of a short run).
WORSE_BY = 0.05


class NothingToTry(TrainerError):
    """The run has no alert with a config remedy to try."""


@dataclass
class Trial:
    run_id: str
    role: str  # CONTROL or REMEDY
    start: str  # R.FORK or R.NEW
    sets: dict = field(default_factory=dict)
    why: str = ""


@dataclass
class TrialGroup:
    name: str
    parent: str
    code: str
    steps: int
    trials: list[Trial]


def read_trial(run_dir: Path) -> dict | None:
    """A run's trial.json, or None when it is not a trial."""
    try:
        record = json.loads((Path(run_dir) / rf.TRIAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def groups(runs_dir: str | Path, parent: str | None = None) -> dict[str, list[tuple[Path, dict]]]:
    """Trial groups under runs_dir (of one parent when given): {group: [(run_dir, trial.json)]}, oldest first."""
    found: dict[str, list[tuple[Path, dict]]] = {}
    runs_dir = Path(runs_dir)
    for run_dir in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        record = read_trial(run_dir) if run_dir.is_dir() else None
        if record and (parent is None or record.get("parent") == parent):
            found.setdefault(str(record.get("group")), []).append((run_dir, record))
    return dict(sorted(found.items(), key=lambda kv: min(r.get("created", 0) for _, r in kv[1])))


def _target_alert(result: dict, run_id: str) -> dict:
    """The most severe, then earliest, alert with a config remedy."""
    serious = [a for a in result["alerts"] if a["severity"] != "info"]
    if not serious:
        raise NothingToTry(f"run {run_id!r} has no warning or critical alert: there is nothing to remedy")
    serious.sort(key=lambda a: (-SEVERITY_RANK[a["severity"]], a["step"] or 0))
    for alert in serious:
        if any(R.kind_of(r) == R.CONFIG for r in alert["remedy"]):
            return alert
    kinds = "; ".join(f"{a['code']}: {a['remedy'][0]['why'] if a['remedy'] else 'no remedy'}" for a in serious)
    raise NothingToTry(f"run {run_id!r}'s remedies are not config changes, so no run can try them ({kinds})")


def _checkpoint_step(run_dir: Path, name: str) -> int | None:
    """The step of the newest checkpoint event that wrote `name` (best.pt, last.pt)."""
    steps = [
        e.get("step")
        for e in read_records(run_dir / rf.EVENTS_FILE, b'"checkpoint"')
        if e.get("kind") == "checkpoint" and name in (e.get("files") or [])
    ]
    return steps[-1] if steps and isinstance(steps[-1], int) else None


def _refuse_repeat(runs_dir: Path, run_id: str, again: bool) -> None:
    for name, members in groups(runs_dir, run_id).items():
        live = [d.name for d, r in members if _state(d, r.get("pid"), r.get("pid_create_time")) in rf.LIVE_STATES]
        if live:
            raise RunStateError(
                f"trials of {run_id!r} are still running ({', '.join(live)}); stop them with `python -m trainer "
                f"stop ID`, or read them with `python -m trainer try-remedies {run_id} --report`"
            )
        if not again:
            raise RunStateError(
                f"the remedies of {run_id!r} were tried already (group {name}): read them with `python -m trainer "
                f"try-remedies {run_id} --report`, or add --again to try them anew"
            )


def _free_group_name(runs_dir: Path, run_id: str) -> str:
    base = f"{rf.id_part(run_id, 40) or 'run'}-try"
    name, n = base, 2
    while any(p.name.startswith(name + "-") for p in runs_dir.iterdir()) if runs_dir.is_dir() else False:
        name, n = f"{base}{n}", n + 1
    return name


def plan(runs_dir: str | Path, run_id: str, steps: int | None = None, again: bool = False) -> TrialGroup:
    """The trials of run_id's alert, checked, with nothing started: RunNotFound, NothingToTry,
    RunStateError (trials of it running, or tried already without again), ConfigError."""
    runs_dir = Path(runs_dir)
    run_dir = rf.existing_run_path(runs_dir, run_id)
    mine = read_trial(run_dir)
    if mine:
        raise NothingToTry(f"run {run_id!r} is itself a trial of {mine.get('parent')!r}; try the remedies of that run")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps {steps}: give a whole number of steps, at least 1")
    if read_config(run_dir) is None:
        raise NothingToTry(f"run {run_id!r} has no config.yaml (not our trainer's run), so no trial can rerun it")
    status = read_status(run_dir)
    if status is not None and not written_by_trainer(status):
        raise NothingToTry(
            f"run {run_id!r} was written by its own script (trainer.init) or imported, and a trial reruns our "
            "trainer's runs only: make the change its remedies name in that script and run it again"
        )
    alert = _target_alert(diagnose(run_dir), run_id)
    _refuse_repeat(runs_dir, run_id, again)
    config = C.from_dict(read_config(run_dir))
    offered = [r for r in alert["remedy"] if R.kind_of(r) == R.CONFIG]
    name = _free_group_name(runs_dir, run_id)
    starts = list(dict.fromkeys(r.get("start", R.FORK) for r in offered))
    trials = [Trial(f"{name}-control" + (f"-{s}" if len(starts) > 1 else ""), CONTROL, s) for s in starts]
    trials += [
        Trial(f"{name}-r{k}", REMEDY, r.get("start", R.FORK), dict(r["set"]), r["why"])
        for k, r in enumerate(offered, 1)
    ]
    return TrialGroup(name, run_id, alert["code"], steps or config.max_steps, trials)


def _sets(changes: dict) -> list[str]:
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in changes.items()]


def fork_source(parent_dir: Path) -> tuple[str, int]:
    """(checkpoint, its step) a fork trial starts from: best.pt, else last.pt."""
    source = "best" if "best" in available_checkpoints(parent_dir) else "last"
    at = _checkpoint_step(parent_dir, rf.CKPT_BEST if source == "best" else rf.CKPT_LAST)
    if at is None:  # a run that logged no checkpoint events: its last.pt is where it stopped
        at = (read_status(parent_dir) or {}).get("step") if source == "last" else 0
    return source, at if isinstance(at, int) else 0


def _launch(runs_dir: Path, group: TrialGroup, trial: Trial) -> int:
    parent_dir = runs_dir / group.parent
    config = C.from_dict(read_config(parent_dir))
    if trial.start == R.NEW:
        # Same steps for every trial (after the remedy's own sets, so these win).
        extra = [f"max_steps={group.steps}", f"warmup_steps={min(config.warmup_steps, group.steps - 1)}"]
        _, pid = process.start_new(parent_dir / rf.CONFIG_FILE, _sets(trial.sets) + extra, runs_dir, trial.run_id)
        return pid
    source, at = fork_source(parent_dir)
    extra = [f"max_steps={at + group.steps}"]
    return process.start_fork(runs_dir, group.parent, source, trial.run_id, _sets(trial.sets) + extra)


def start_trials(
    runs_dir: str | Path, run_id: str, steps: int | None = None, again: bool = False, one_by_one: bool = False
) -> TrialGroup:
    """Plan run_id's trials and start them all in the background (they share the cores); returns
    the group. one_by_one: start each when the one before has ended, and return when all have."""
    runs_dir = Path(runs_dir)
    group = plan(runs_dir, run_id, steps, again)
    created = time.time()
    for trial in group.trials:
        pid = _launch(runs_dir, group, trial)
        record = {
            "pid": pid,
            "pid_create_time": _create_time(pid),
            "group": group.name,
            "parent": group.parent,
            "code": group.code,
            "role": trial.role,
            "start": trial.start,
            "set": trial.sets,
            "why": trial.why,
            "steps": group.steps,
            "from_step": fork_source(runs_dir / group.parent)[1] if trial.start == R.FORK else 0,
            "created": created,
        }
        atomic_write_text(runs_dir / trial.run_id / rf.TRIAL_FILE, json.dumps(record, indent=1))
        if one_by_one:
            _wait_for(runs_dir / trial.run_id, pid, record["pid_create_time"])
    return group


@dataclass
class TrialRow:
    run_id: str
    role: str
    start: str
    change: str  # "k=v, ..." or "(none)"
    state: str
    step: int | None
    fires: bool | None  # the parent's failure code still fires (None while it runs)
    train_loss: float | None  # median of the last 3 logged train/loss
    val_loss: float | None  # the last val/loss
    verdict: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _last_losses(run_dir: Path) -> tuple[float | None, float | None]:
    rows = read_records(run_dir / rf.METRICS_FILE)
    train = [r[rf.TRAIN_LOSS] for r in rows if isinstance(r.get(rf.TRAIN_LOSS), (int, float))][-3:]
    val = [r[rf.VAL_LOSS] for r in rows if isinstance(r.get(rf.VAL_LOSS), (int, float))]
    return (sorted(train)[len(train) // 2] if train else None), (val[-1] if val else None)


def _verdict(row: TrialRow, control: TrialRow | None) -> str:
    if row.state in rf.LIVE_STATES:
        return "running"
    if row.fires is None:
        return f"no result: {row.state} before logging a metric"
    if row.role == CONTROL:
        return "fails as the parent did" if row.fires else "did not fail: the trial is too short to judge"
    if row.fires:
        return "still fails"
    worse = [
        name
        for name, mine, theirs in (
            ("train", row.train_loss, control.train_loss if control else None),
            ("val", row.val_loss, control.val_loss if control else None),
        )
        if mine is not None and theirs is not None and mine > theirs * (1 + WORSE_BY)
    ]
    fixed = "fixed" if control is None or control.fires else "no failure (nor in the control)"
    return fixed + (f", but {' and '.join(worse)} loss worse than the control" if worse else "")


def _fires(runs_dir: Path, run_dir: Path, record: dict) -> bool:
    """Does the parent's code fire (warning or critical) in this trial? Diagnosed on its own, and
    for a fork also as the parent's run continued (rf. doctor.continued): a fork's first rows have no
    history of their own, so a failure right after the fork (a spike) would otherwise go unjudged."""
    code = record.get("code")

    def serious(alerts) -> bool:
        return any(a["code"] == code and a["severity"] != "info" for a in alerts)

    if serious(diagnose(run_dir)["alerts"]):
        return True
    parent = runs_dir / str(record.get("parent"))
    step = record.get("from_step")
    return (
        record.get("start") == R.FORK
        and isinstance(step, int)
        and parent.is_dir()
        and serious(continued(parent, run_dir, step))
    )


def report(runs_dir: str | Path, name: str) -> list[TrialRow]:
    """One row per trial run of group `name` (controls first), judged by diagnosing each run:
    does the parent's code still fire (warning or critical), and its losses against its control."""
    members = groups(runs_dir).get(name)
    if not members:
        raise NothingToTry(f"no remedy trials named {name!r}; `python -m trainer try-remedies RUN` starts some")
    rows = []
    for run_dir, record in sorted(members, key=lambda m: (m[1].get("role") != CONTROL, m[0].name)):
        state = _state(run_dir, record.get("pid"), record.get("pid_create_time"))
        fires = None
        if state not in rf.LIVE_STATES and (run_dir / rf.METRICS_FILE).exists():
            fires = _fires(Path(runs_dir), run_dir, record)
        train, val = _last_losses(run_dir)
        change = ", ".join(_sets(record.get("set") or {})) or "(none)"
        step = (read_status(run_dir) or {}).get("step")
        rows.append(
            TrialRow(
                run_dir.name,
                record.get("role", ""),
                record.get("start", ""),
                change,
                state,
                step,
                fires,
                train,
                val,
                "",
            )
        )
    controls = {r.start: r for r in rows if r.role == CONTROL}
    for row in rows:
        row.verdict = _verdict(row, controls.get(row.start))
    return rows


def wait(runs_dir: str | Path, name: str) -> None:
    """Return once no run of group `name` is live (each ends by itself after its steps)."""
    for run_dir, record in groups(runs_dir).get(name, []):
        _wait_for(run_dir, record.get("pid"), record.get("pid_create_time"))


def _wait_for(run_dir: Path, pid: int | None = None, created: float | None = None, poll_s: float = 0.5) -> None:
    while _state(run_dir, pid, created) in rf.LIVE_STATES:
        time.sleep(poll_s)


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _state(run_dir: Path, pid: int | None, created: float | None) -> str:
    """run_state, except that a trial whose launched process is still importing (no status.json
    yet, for longer than a heartbeat on a loaded machine) is starting, not crashed."""
    state = run_state(run_dir)
    if state != rf.CRASHED or read_status(run_dir) is not None or not isinstance(pid, int):
        return state
    process.reap()  # a child of ours that ended is collected, not left a zombie
    try:
        proc = psutil.Process(pid)
        same = created is None or abs(proc.create_time() - created) < rf.CREATE_TIME_TOLERANCE_S
        return rf.STARTING if same and proc.status() != psutil.STATUS_ZOMBIE else state
    except psutil.Error:
        return state


def latest_group(runs_dir: str | Path, run_id: str) -> str:
    """The newest trial group of run_id (or run_id itself when it names a group)."""
    if run_id in groups(runs_dir):
        return run_id
    mine = groups(runs_dir, run_id)
    if not mine:
        raise NothingToTry(
            f"run {run_id!r} has no remedy trials yet; `python -m trainer try-remedies {run_id}` starts them"
        )
    return list(mine)[-1]


def format_report(name: str, rows: list[TrialRow]) -> str:
    """The report as a plain table for the terminal."""
    header = ("RUN", "ROLE", "START", "CHANGE", "STATE", "STEP", "FIRES", "TRAIN", "VAL", "VERDICT")
    table = [header]
    for r in rows:
        loss = [f"{v:.4g}" if v is not None else "-" for v in (r.train_loss, r.val_loss)]
        fires = "-" if r.fires is None else ("yes" if r.fires else "no")
        table.append((r.run_id, r.role, r.start, r.change, r.state, str(r.step or "-"), fires, *loss, r.verdict))
    widths = [max(len(row[c]) for row in table) for c in range(len(header) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1] for row in table]
    return f"remedy trials {name}\n" + "\n".join(lines)
