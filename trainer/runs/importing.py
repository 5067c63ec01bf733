"""Import another logger's runs as run directories: TensorBoard event files and CSV tables.

    python -m trainer import tensorboard LOGDIR [--run-id ID] [--runs-dir DIR]
    python -m trainer import csv FILE [--run-id ID] [--runs-dir DIR]

    from trainer.runs.importing import import_tensorboard, import_csv
    import_tensorboard("lightning_logs", "runs")        # -> [ImportedRun(run_id="version_0", ...)]

Each folder under LOGDIR that holds event files becomes one run: its scalars go to metrics.jsonl
keyed by step, with the well-known tags renamed to ours (loss -> train/loss, eval_loss -> val/loss,
learning_rate -> lr, grad_norm -> grad/norm; SERIES_ALIASES) and every other tag kept as it is; its
text summaries go to samples.jsonl; its hparams, if any, become config.yaml. A CSV needs a `step`
column; every other numeric column becomes a series under the same renaming. The run writer
(trainer.rundir.writer) writes everything, so the format is exactly ours, and the run ends finished.

Everything is read and checked before anything is written, and runs are written in a hidden
folder under runs_dir and moved into place at the end: bad input leaves nothing half-written.
TensorBoard is not a dependency of ours: importing its logs asks for it by name when it is missing.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trainer.doctor.diagnose import replay
from trainer.errors import ImportSourceError, RunExists
from trainer.rundir import run_format as rf
from trainer.rundir.writer import open_run
from trainer.training.doctor_hook import record_alert

# Lower-cased tag or column name -> our series name (run_format). Anything else keeps its name.
SERIES_ALIASES = {
    **dict.fromkeys(
        ("loss", "train_loss", "train/loss", "loss/train", "training_loss", "train/train_loss"), rf.TRAIN_LOSS
    ),
    **dict.fromkeys(
        ("eval_loss", "val_loss", "valid_loss", "validation_loss", "eval/loss", "val/loss", "loss/val", "loss/eval"),
        rf.VAL_LOSS,
    ),
    **dict.fromkeys(("learning_rate", "lr", "train/learning_rate", "train/lr", "lr-adamw", "lr-adam"), rf.LR),
    **dict.fromkeys(("grad_norm", "gradient_norm", "train/grad_norm", "grad/norm"), rf.GRAD_NORM),
}
# CSV columns, lower-cased, that number the rows (the first present is taken): ours, Lightning's
# and HF's `step`, a W&B history export's `_step`, a `global_step`.
STEP_COLUMNS = ("step", "_step", "global_step", "trainer/global_step")
# CSV columns that are the row's wall-clock time, not a series (TensorBoard's CSV download: "Wall
# time"; a W&B history export: `_timestamp`), and W&B's seconds since the run began.
TIME_COLUMNS = ("time", "wall_time", "wall time", "timestamp", "_timestamp")
NOT_SERIES = ("_runtime",)
# A W&B chart's CSV: "<run> - <key>" with "<run> - <key>__MIN" and "__MAX" beside it (the range of
# the points it merged); a TensorBoard CSV download of one tag: "Wall time,Step,Value", in a file
# named run-<run>-tag-<tag>.csv ("/" in the tag written as "_").
WANDB_RANGE = ("__MIN", "__MAX")
TB_DOWNLOAD = re.compile(r"run-(?P<run>.*)-tag-(?P<tag>.+)")
TEXT_SUFFIX = "/text_summary"  # what torch's SummaryWriter.add_text appends to a text tag


@dataclass
class ImportedRun:
    """One run read from another logger, ready to write: rows by step, samples, config."""

    run_id: str
    source: str  # "tensorboard LOGDIR/sub" or "csv FILE", for the start event and the CLI
    rows: dict[int, dict[str, float]] = field(default_factory=dict)
    times: dict[int, float] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)  # {"step", "time", "text", "tag"}
    config: dict = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)  # the doctor's, as written into events.jsonl

    def add(self, step: int, key: str, value: float, time_: float | None = None) -> None:
        self.rows.setdefault(step, {})[key] = value
        if time_ is not None:
            self.times.setdefault(step, time_)

    @property
    def series(self) -> list[str]:
        return sorted({key for row in self.rows.values() for key in row})


def series_names(names) -> dict[str, str]:
    """Each tag or column -> its series name. Two names for one series (`loss` and `train/loss`):
    the one already spelled our way, else the first in sorted order, gets it; the other keeps its own."""
    out, taken = {}, set()
    ordered = sorted(names, key=lambda name: (SERIES_ALIASES.get(name.lower()) != name, name))
    for name in ordered:
        key = SERIES_ALIASES.get(name.lower(), name)
        out[name] = key if key not in taken else name
        taken.add(out[name])
    return out


def safe_run_id(name: str) -> str:
    """A folder or file name as a run id: other characters become '-', at most 64 characters."""
    return rf.id_part(name) or "imported"


# --- TensorBoard --------------------------------------------------------------------------------


def _event_accumulator():
    # Lazy and optional: tensorboard is not one of our dependencies, and takes a second to import.
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise ImportSourceError("importing TensorBoard logs needs tensorboard: pip install tensorboard") from None
    return event_accumulator


def _hparams(acc) -> dict:
    """The hparams of SummaryWriter.add_hparams (or the hparams plugin), as a flat dict."""
    try:
        content = acc.PluginTagToContent("hparams").get("_hparams_/session_start_info")
    except KeyError:  # no hparams in this folder
        return {}
    if not content:
        return {}
    from tensorboard.plugins.hparams import plugin_data_pb2  # with tensorboard, checked above

    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {
        name: getattr(value, value.WhichOneof("kind")) for name, value in hparams.items() if value.WhichOneof("kind")
    }


def _read_event_folder(folder: Path, run_id: str, source: str) -> ImportedRun:
    ea = _event_accumulator()
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    run = ImportedRun(run_id, source)
    scalars = {tag: [(e.wall_time, e.step, e.value) for e in acc.Scalars(tag)] for tag in tags.get("scalars", [])}
    texts = {}
    for tag in tags.get("tensors", []):
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin == "scalars":  # TF2's tf.summary.scalar writes a tensor, not a simple value
            from tensorboard.util import tensor_util  # with tensorboard, checked above

            scalars[tag] = [(e.wall_time, e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        elif plugin == "text":
            texts[tag.removesuffix(TEXT_SUFFIX)] = acc.Tensors(tag)
    names = series_names(scalars)
    for tag, events in scalars.items():
        for wall_time, step, value in events:
            run.add(int(step), names[tag], float(value), wall_time)
    for tag, events in texts.items():
        for e in events:
            text = b"\n".join(e.tensor_proto.string_val).decode("utf-8", "replace")
            run.samples.append({"step": int(e.step), "time": e.wall_time, "text": text, "tag": tag})
    run.config = _hparams(acc)
    return run


def read_tensorboard(logdir: str | Path, run_id: str | None = None) -> list[ImportedRun]:
    """Every run folder under logdir (one holding event files), read; raises ImportSourceError."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ImportSourceError(f"no directory {logdir}: give the folder your SummaryWriter wrote to (its log_dir)")
    folders = sorted({p.parent for p in logdir.rglob("*tfevents*") if p.is_file()})
    if not folders:
        raise ImportSourceError(f"no TensorBoard event files (events.out.tfevents.*) under {logdir}")
    base = rf.validate_run_id(run_id) if run_id else safe_run_id(logdir.resolve().name)
    runs = []
    for folder in folders:
        # One folder: the run id (or LOGDIR's name); several: each folder's path under LOGDIR,
        # after the run id if one was given.
        rel = folder.relative_to(logdir).as_posix()
        if rel == "." or (run_id and len(folders) == 1):
            name = base
        else:
            name = safe_run_id(f"{run_id}-{rel}" if run_id else rel)
        run = _read_event_folder(folder, name, f"tensorboard {folder}")
        if run.rows or run.samples:
            runs.append(run)
    if not runs:
        raise ImportSourceError(f"the event files under {logdir} hold no scalars and no text summaries")
    return runs


# --- CSV ------------------------------------------------------------------------------------------


def _number(cell: str) -> float | None:
    """A cell as a float; None when empty; ValueError when it is not a number."""
    cell = cell.strip()
    return float(cell) if cell else None


def read_csv(path: str | Path, run_id: str | None = None) -> ImportedRun:
    """A CSV with a `step` column: every other numeric column is a series; raises ImportSourceError."""
    path = Path(path)
    if not path.is_file():
        raise ImportSourceError(f"no file {path}")
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    if not table or not any(table[0]):
        raise ImportSourceError(f"{path} is empty; expected a header row with a step column")
    header = [name.strip() for name in table[0]]
    lower = [name.lower() for name in header]
    step_at = next((lower.index(name) for name in STEP_COLUMNS if name in lower), None)
    if step_at is None:
        raise ImportSourceError(
            f"{path} has no step column (columns: {', '.join(header)}); add one named step "
            f"(also read: {', '.join(STEP_COLUMNS[1:])})"
        )
    times = [lower.index(name) for name in TIME_COLUMNS if name in lower]
    time_at = next((i for i in times if _all_numbers(table[1:], i)), None)  # dates as text are left out
    skip = {step_at, *times, *(i for i, name in enumerate(lower) if name in STEP_COLUMNS + NOT_SERIES)}
    skip |= {i for i, name in enumerate(header) if name.endswith(WANDB_RANGE)}
    numeric = [i for i in range(len(header)) if i not in skip and _all_numbers(table[1:], i)]
    if not numeric:
        raise ImportSourceError(f"{path} has no numeric column besides step (columns: {', '.join(header)})")
    download = TB_DOWNLOAD.fullmatch(path.stem)
    columns = _column_names([header[i] for i in numeric], download["tag"] if download else path.stem)
    names = series_names(columns)
    stem = download["run"] if download and download["run"].strip(".") else path.stem
    run = ImportedRun(rf.validate_run_id(run_id) if run_id else safe_run_id(stem), f"csv {path}")
    for line_no, row in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        step = _step(row, step_at, path, line_no)
        time_ = _cell_number(row, time_at)
        for i, column in zip(numeric, columns):
            value = _cell_number(row, i)
            if value is not None:
                run.add(step, names[column], value, time_)
    if not run.rows:
        raise ImportSourceError(f"{path} has a header but no rows with values")
    return run


def _column_names(columns: list[str], lone_value: str) -> list[str]:
    """The series' names as their tool meant them: a W&B chart's "<run> - " taken off where every
    column has the same one; a TensorBoard download's lone "Value" named lone_value (the tag in its
    run-<run>-tag-<tag>.csv name, else the file's name)."""
    prefixes = {c.split(" - ", 1)[0] for c in columns if " - " in c}
    if len(prefixes) == 1 and all(" - " in c for c in columns):
        return [c.split(" - ", 1)[1] for c in columns]
    if [c.lower() for c in columns] == ["value"]:
        return [lone_value]
    return columns


def _cell_number(row: list[str], i: int | None) -> float | None:
    if i is None or i >= len(row):
        return None
    return _number(row[i])


def _all_numbers(rows: list[list[str]], i: int) -> bool:
    try:
        return any(_cell_number(row, i) is not None for row in rows)
    except ValueError:
        return False  # text in a column: not a series


def _step(row: list[str], i: int, path: Path, line_no: int) -> int:
    try:
        step = _cell_number(row, i)
    except ValueError:
        step = math.nan
    if step is None or not math.isfinite(step) or step != int(step) or step < 0:
        cell = row[i] if i < len(row) else ""
        raise ImportSourceError(f"{path} line {line_no}: step {cell!r} is not a whole number >= 0")
    return int(step)


# --- writing ------------------------------------------------------------------------------------


def write_runs(runs_dir: str | Path, runs: list[ImportedRun]) -> list[ImportedRun]:
    """Write each run as runs_dir/<run_id>/ (state finished); all ids are checked free first, and
    the runs are written in a hidden folder and moved into place, so a failure leaves nothing."""
    runs_dir = Path(runs_dir)
    ids = [run.run_id for run in runs]
    for run_id in ids:
        if ids.count(run_id) > 1:
            raise ImportSourceError(f"two runs would both be named {run_id!r}; import them one at a time with --run-id")
        if rf.run_path(runs_dir, run_id).exists():
            raise RunExists(f"run {run_id!r} already exists in {runs_dir}; pick another --run-id")
    runs_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=runs_dir))
    try:
        for run in runs:
            _write(staging, run)
        for run in runs:
            os.rename(staging / run.run_id, rf.run_path(runs_dir, run.run_id))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return runs


def _write(runs_dir: Path, run: ImportedRun) -> None:
    config = run.config or {"imported_from": run.source}
    steps = sorted(run.rows)
    first, last = (steps[0], steps[-1]) if steps else (0, max(s["step"] for s in run.samples))
    writer = open_run(runs_dir, run.run_id, config=config)
    started = min([*run.times.values(), *(s["time"] for s in run.samples)], default=None)
    writer.event("start", f"imported from {run.source}", step=first)
    for step in steps:
        writer.log(step, run.rows[step], time_=run.times.get(step))
    for sample in sorted(run.samples, key=lambda s: s["step"]):
        writer.log_sample(sample["step"], text=sample["text"], tag=sample["tag"])
    val = [row[rf.VAL_LOSS] for row in run.rows.values() if math.isfinite(row.get(rf.VAL_LOSS, math.nan))]
    writer.set_status(
        step=last,
        max_steps=last,
        **{rf.STATUS_BEST_VAL_LOSS: min(val) if val else None, rf.STATUS_IMPORTED_FROM: run.source},
    )
    if started:
        writer.set_status(started=started)  # when the original run started, not the import
    # The doctor reads the log as the online doctor would have read it while the run trained, and
    # its alerts go where that doctor's go (events.jsonl): the runs table's alerts column, the
    # Diagnosis page's alerts and their remedies show them as for a run of ours.
    writer.flush()
    doctor, _, _ = replay(writer.run_dir, config, schema=False, trainer_wrote=False)
    run.alerts = sorted(doctor.alerts, key=lambda a: a["step"] if a["step"] is not None else -1)
    for alert in run.alerts:
        record_alert(writer, alert)
    message = f"imported {len(steps)} steps of {len(run.series)} series from {run.source}"
    writer.event("finish", message, step=last)
    writer.finish(rf.FINISHED, message)
