"""The logic behind the dashboard's forms: new run from a preset, resume and fork with changes.

Form fields are strings the user edits; only fields that differ from the preset become
`--set key=value` pairs, exactly what the CLI would receive. Starting goes through
trainer.runs.process (the same validation as `python -m trainer run --background`), and a refused
config is mapped back to the field it names so the page can show the error next to it.

    result = start_new_run(preset, {"lr": "3e-4"}, {"lr": "1e-3"}, runs_dir)
    result.field_errors  # {"lr": "lr: -1.0 must be > 0"} when refused, nothing started
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trainer import config as C
from trainer.errors import CheckpointError, ConfigError, RunExists, RunIdError, TrainerError
from trainer.rundir import run_format as rf
from trainer.runs import process

ROOT = Path(__file__).resolve().parents[1]
PRESET_DIR = ROOT / "configs"
DEFAULT_PRESET = PRESET_DIR / "shakespeare_char.yaml"
# The knobs a new-run form shows; anything else goes in its "more --set" box.
FORM_KEYS = (
    "max_steps",
    "batch_size",
    "block_size",
    "lr",
    "min_lr",
    "schedule",
    "warmup_steps",
    "grad_clip",
    "dropout",
    "weight_decay",
    "model.n_layer",
    "model.n_head",
    "model.n_embd",
    "eval_interval",
    "log_interval",
    "sample_interval",
    "device",
)
GENERAL = "_general"  # field_errors key for errors that name no form field
EXTRA = "_extra"  # the free-form key=value box


@dataclass
class FormResult:
    """What a submitted form did: started run_id (pid), or errors by field with nothing started."""

    run_id: str | None = None
    pid: int | None = None
    field_errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.run_id is not None and not self.field_errors


def presets() -> list[Path]:
    """The YAML presets in configs/, the Shakespeare default first."""
    found = sorted(PRESET_DIR.glob("*.yaml"))
    return sorted(found, key=lambda p: p != DEFAULT_PRESET)


def preset_path(name: str) -> Path:
    """A preset by file name, refusing anything outside configs/."""
    path = (PRESET_DIR / Path(name).name).resolve()
    if path.parent != PRESET_DIR.resolve() or not path.is_file():
        raise ConfigError(f"preset {name!r} not found; presets are the .yaml files in configs/")
    return path


def format_value(value) -> str:
    """A config value as the user would type it after --set key=."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def field_values(config: dict, keys=FORM_KEYS) -> dict[str, str]:
    """Dotted key -> editable string, for the keys the form shows."""
    flat = C.flatten(C.from_dict(config).to_dict())
    return {key: format_value(flat[key]) for key in keys if key in flat}


def preset_field_values(preset: Path) -> dict[str, str]:
    """Form values of a preset as a new run would get it (defaults, YAML, environment)."""
    return field_values(C.resolve(preset).to_dict())


# A separator between pairs: commas or spaces, but only where the next key=value starts, so that a
# YAML value holding them ("lr=[1e-3, 2]", "x={a: 1, b: 2}") stays one pair, as one `--set` would.
_PAIR_SEPARATOR = re.compile(r"[,\s]+(?=[A-Za-z_][\w.]*=)")


def parse_sets_text(text: str) -> list[str]:
    """'lr=3e-4\nmodel.n_layer=6' (or comma/space separated) -> ['lr=3e-4', 'model.n_layer=6']."""
    pairs = []
    for line in (text or "").splitlines():
        pairs += [pair.strip(", \t") for pair in _PAIR_SEPARATOR.split(line.strip()) if pair.strip(", \t")]
    return pairs


def changed_sets(original: dict[str, str], edited: dict[str, str], extra_text: str = "") -> list[str]:
    """key=value pairs for fields the user changed, then the free-form extra pairs."""
    sets = [f"{key}={value.strip()}" for key, value in edited.items() if value.strip() != original.get(key, "").strip()]
    return sets + parse_sets_text(extra_text)


def error_field(message: str, fields) -> str:
    """Which form field a ConfigError message is about ("lr: ..." -> "lr"), else GENERAL."""
    head = message.split(":", 1)[0].strip()
    for prefix in ("--set ",):
        head = head.removeprefix(prefix)
    if head in fields:
        return head
    for key in fields:  # "unknown config key model.n_layr; ..." or a key named inside the text
        if f" {key} " in f" {message} " or f" {key}:" in f" {message}":
            return key
    return GENERAL


def _refused(message: str, fields) -> FormResult:
    return FormResult(field_errors={error_field(message, fields): message})


def start_new_run(
    preset: Path,
    edited: dict[str, str],
    original: dict[str, str],
    runs_dir: Path,
    extra_text: str = "",
    run_id: str = "",
) -> FormResult:
    """Validate and start a new background run; on any refusal nothing is started."""
    sets = changed_sets(original, edited, extra_text)
    fields = [*edited, "run_id"]
    try:
        if run_id.strip():
            rf.validate_run_id(run_id.strip())
        new_id, pid = process.start_new(preset, sets, runs_dir, run_id.strip() or None)
    except (RunIdError, RunExists) as e:
        return FormResult(field_errors={"run_id": str(e)})
    except TrainerError as e:
        return _refused(str(e), fields)
    return FormResult(run_id=new_id, pid=pid)


def start_default_run(runs_dir: Path) -> FormResult:
    """The one-click Shakespeare run of the empty state."""
    return start_new_run(DEFAULT_PRESET, {}, {}, runs_dir)


def start_new_from_run(runs_dir: Path, run_id: str, sets: list[str]) -> FormResult:
    """A new run from scratch with run_id's own config.yaml and the changes (a remedy that says to
    start afresh), as run_id-new (-new2, ...); refusals say why and start nothing."""
    run_dir = rf.run_path(runs_dir, run_id)
    new_id, n = f"{rf.id_part(run_id, 56)}-new", 2
    while (runs_dir / new_id).exists():
        new_id, n = f"{rf.id_part(run_id, 56)}-new{n}", n + 1
    try:
        new_id, pid = process.start_new(run_dir / rf.CONFIG_FILE, sets, runs_dir, new_id)
    except TrainerError as e:
        return FormResult(field_errors={"sets": str(e)})
    return FormResult(run_id=new_id, pid=pid)


def start_resume(runs_dir: Path, run_id: str, sets_text: str = "") -> FormResult:
    """Resume run_id (same run) with optional key=value changes; refusals say why."""
    try:
        pid = process.start_resume(runs_dir, run_id, parse_sets_text(sets_text))
    except TrainerError as e:
        return FormResult(field_errors={"sets": str(e)})
    return FormResult(run_id=run_id, pid=pid)


def checkpoint_choices(available: list[str], picked: str | None) -> list[str]:
    """The fork form's checkpoints: those on disk, plus the one the user picked if it has gone since
    (the trainer keeps only the newest few). Dropped from the options, a picked checkpoint would
    silently fall back to another one and the fork would start from it; kept, the fork is refused
    with the CLI's message, which lists what exists."""
    if picked is None or picked in available:
        return list(available)
    named = [name for name in ("last", "best") if name in (*available, picked)]
    steps = sorted({int(name) for name in (*available, picked) if name.isdigit()})
    return named + [str(step) for step in steps]


def start_fork(runs_dir: Path, run_id: str, from_: str, new_id: str, sets_text: str = "") -> FormResult:
    """Fork run_id from a checkpoint into new_id with key=value changes."""
    try:
        pid = process.start_fork(runs_dir, run_id, from_, new_id.strip(), parse_sets_text(sets_text))
    except (RunIdError, RunExists) as e:
        return FormResult(field_errors={"new_id": str(e)})
    except CheckpointError as e:
        return FormResult(field_errors={"from": str(e)})
    except TrainerError as e:
        return FormResult(field_errors={"sets": str(e)})
    return FormResult(run_id=new_id.strip(), pid=pid)
