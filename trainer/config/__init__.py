"""The config schema: every knob, its default, its allowed values, and how a config is resolved.

Resolution order (later wins): the dataclass defaults, a YAML file, environment overrides
(BATCH_SIZE=32, BLOCK_SIZE=128, LEARNING_RATE=1e-5, ...), then `--set key=value` pairs.
Nested keys use dots: `--set model.n_layer=6`, `--set curriculum.ramp=linear`.
Everything is validated before a run directory is touched; a ConfigError names the key, the
value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import ConfigError

SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")
AMP_MODES = ("off", "bf16", "fp16")
RAMPS = ("linear", "exponential")


def _positive(v):
    return v > 0, "must be > 0"


def _non_negative(v):
    return v >= 0, "must be >= 0"


def _at_least_one(v):
    return v >= 1, "must be >= 1"


def _fraction(v):
    return 0 <= v < 1, "must be in [0, 1)"


def _open_fraction(v):
    return 0 < v < 1, "must be in (0, 1)"


def _one_of(*choices):
    def check(v):
        return v in choices, "must be one of " + ", ".join(map(str, choices))

    return check


def _threads_setting(v):
    return v == "auto" or (v.isdigit() and int(v) >= 1), "must be auto or a whole number of threads >= 1"


def _identifier(v):
    return isinstance(v, str) and v.isidentifier(), "must be a task name (letters, digits and _)"


def knob(default, check=None, doc=""):
    """A config field with its validation next to it."""
    return field(default=default, metadata={"check": check, "doc": doc})


@dataclass
class ModelConfig:
    n_layer: int = knob(4, _at_least_one, "transformer blocks")
    n_head: int = knob(4, _at_least_one, "attention heads; must divide n_embd")
    n_embd: int = knob(128, _at_least_one, "model width (d_model)")
    bias: bool = knob(False, None, "bias in Linear and LayerNorm layers")


@dataclass
class EarlyStoppingConfig:
    patience: int = knob(0, _non_negative, "evals without improvement before stopping; 0 = off")
    min_delta: float = knob(0.0, _non_negative, "improvement in val/loss that counts")


@dataclass
class CurriculumConfig:
    # The difficulty (0..1] multiplies the task's noise level; the task decides what that means.
    ramp: str = knob("none", _one_of("none", *RAMPS), "none = full difficulty from step 0")
    preschool_steps: int = knob(0, _non_negative, "steps to reach full difficulty")
    start: float = knob(0.1, _open_fraction, "difficulty at step 0")


@dataclass
class DoctorConfig:
    enabled: bool = knob(True, None, "run the detectors online every log interval")
    on_critical: str = knob("off", _one_of("off", "stop"), "stop = checkpoint and stop on any critical alert")
    stop_on: list = field(
        default_factory=lambda: ["non_finite"],
        metadata={"check": None, "doc": "alert codes that always stop the run"},
    )


@dataclass
class Config:
    # Which names exist is the task registry's to say (trainer.training.tasks), checked when the
    # task is built: still before a run directory is written.
    task: str = knob("char_lm", _identifier, "what is trained: a module name in trainer/training/tasks/")
    data_path: str = knob("data/tinyshakespeare.txt", None, "text corpus for text tasks")
    init_from: str = knob("", None, "checkpoint whose weights a new run starts from (fine-tuning; '' = scratch)")
    seed: int = knob(1337, _non_negative)
    device: str = knob("auto", None, "auto | cpu | cuda | cuda:N | mps (auto: a GPU none of our runs is on)")
    threads: str = knob(
        "auto",
        _threads_setting,
        "CPU threads; auto = an equal share, among our live runs, of the physical cores free of other work",
    )
    max_steps: int = knob(2000, _at_least_one)
    batch_size: int = knob(12, _at_least_one)
    block_size: int = knob(64, _at_least_one, "sequence length")
    grad_accum_steps: int = knob(1, _at_least_one)
    lr: float = knob(1e-3, _positive, "peak learning rate")
    min_lr: float = knob(1e-4, _non_negative, "final LR of warmup_cosine / warmup_linear")
    schedule: str = knob("warmup_cosine", _one_of(*SCHEDULES))
    warmup_steps: int = knob(100, _non_negative)
    weight_decay: float = knob(0.1, _non_negative)
    beta1: float = knob(0.9, _open_fraction)
    beta2: float = knob(0.99, _open_fraction)
    grad_clip: float = knob(1.0, _non_negative, "max grad norm; 0 = off")
    dropout: float = knob(0.0, _fraction)
    ema: float = knob(0.0, _fraction, "EMA decay of weights; 0 = off")
    amp: str = knob("off", _one_of(*AMP_MODES), "CUDA only; fp16 uses a GradScaler")
    eval_interval: int = knob(250, _at_least_one)
    eval_steps: int = knob(200, _at_least_one, "batches per val/loss estimate")
    log_interval: int = knob(10, _at_least_one)
    probe_interval: int = knob(50, _at_least_one, "steps between grads.jsonl rows")
    sample_interval: int = knob(250, _at_least_one)
    sample_length: int = knob(200, _at_least_one, "characters/values per sample")
    checkpoint_interval: int = knob(500, _at_least_one)
    keep_checkpoints: int = knob(3, _non_negative, "periodic step checkpoints kept; last and best always kept")
    val_split: float = knob(0.1, _open_fraction)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    # Task-specific knobs, validated by the task's own options dataclass (trainer/training/tasks/).
    options: dict = field(default_factory=dict, metadata={"check": None, "doc": "task-specific knobs"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys that change parameter shapes: a resume may not change them (a fork from a checkpoint
# may not either, since the weights are loaded). block_size sizes the GPT's position embedding.
SHAPE_KEYS = ("task", "model.n_layer", "model.n_head", "model.n_embd", "model.bias", "block_size")

# Environment overrides, as the GPT-2 incident report used them. Any top-level scalar key in upper
# case works too (MAX_STEPS=500, WARMUP_STEPS=0).
ENV_ALIASES = {"LEARNING_RATE": "lr", "TRAINING_STEPS": "max_steps"}
_ENV_EXCLUDED = {"task", "device", "data_path", "init_from", "options"}


def _fields_by_name(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Convert value to the field's type, or raise ConfigError naming the key."""
    typ_name = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if typ_name == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            raise ValueError
        if typ_name == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, (int, str)):
                return int(value)
            raise ValueError
        if typ_name == "float":
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        if typ_name == "str":
            if isinstance(value, bool):  # an unquoted off/on/yes/no in a YAML file
                raise ConfigError(
                    f'{key}: {value!r} is a boolean to YAML (unquoted off/on/yes/no); quote it, e.g. {key}: "off"'
                )
            if isinstance(value, (dict, list)) or value is None:
                raise ValueError
            return str(value)
        if typ_name == "list":
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list):
                return list(value)
            raise ValueError
        if typ_name == "dict":
            if isinstance(value, dict):
                return dict(value)
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a valid {typ_name}") from None
    return value


def _build(cls, data: dict, prefix: str = ""):
    """Build dataclass cls from a dict, refusing unknown keys and checking every value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    known = _fields_by_name(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; allowed keys: " + ", ".join(prefix + k for k in known)
        )
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            continue
        value = data[name]
        key = prefix + name
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[name] = _build(f.default_factory, value or {}, key + ".")
            continue
        value = _coerce(key, value, f.type)
        check = f.metadata.get("check")
        if check is not None:
            ok, allowed = check(value)
            if not ok:
                raise ConfigError(f"{key}: {value!r} {allowed}")
        kwargs[name] = value
    return cls(**kwargs)


def validate(cfg: Config) -> Config:
    """Cross-field checks that no single field can make."""
    if cfg.model.n_embd % cfg.model.n_head:
        raise ConfigError(
            f"model.n_head: {cfg.model.n_head} does not divide model.n_embd {cfg.model.n_embd}; "
            "pick n_head so that n_embd / n_head is whole"
        )
    if cfg.min_lr > cfg.lr and cfg.schedule != "constant":
        raise ConfigError(
            f"min_lr: {cfg.min_lr} is above lr {cfg.lr}; use at most {cfg.lr} (--set min_lr=...) or schedule=constant"
        )
    if cfg.warmup_steps >= cfg.max_steps and cfg.schedule != "constant":
        raise ConfigError(
            f"warmup_steps: {cfg.warmup_steps} is not below max_steps {cfg.max_steps}; "
            f"use at most {cfg.max_steps - 1} or schedule=constant"
        )
    if cfg.curriculum.ramp != "none" and cfg.curriculum.preschool_steps < 1:
        raise ConfigError(
            f"curriculum.preschool_steps: {cfg.curriculum.preschool_steps} must be >= 1 when curriculum.ramp is "
            f"{cfg.curriculum.ramp!r}"
        )
    device = cfg.device
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"device: {device!r} must be auto, cpu, cuda, cuda:N or mps")
    return cfg


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_set(pairs: list[str] | None) -> dict[str, Any]:
    """['lr=3e-4', 'model.n_layer=6'] -> {'lr': '3e-4', 'model.n_layer': 6} (YAML-typed values)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set lr=3e-4")
        out[key] = _typed(raw) if raw.strip() else ""
    return out


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """BATCH_SIZE=32 style overrides from the environment, as dotted keys."""
    environ = os.environ if environ is None else environ
    names = {f.name.upper(): f.name for f in dataclasses.fields(Config)}
    names = {k: v for k, v in names.items() if v not in _ENV_EXCLUDED and not _is_section(v)}
    names.update(ENV_ALIASES)
    out = {}
    for env_name, key in names.items():
        if env_name in environ:
            out[key] = _typed(environ[env_name])
    return out


# The most values a config may hold once YAML's aliases are expanded: a config has about a hundred,
# and a YAML alias bomb (9 lists of 9 aliases of the list before, ...) billions, which every later step
# that copies, prints or writes the config would expand.
MAX_YAML_VALUES = 100_000


def check_expanded_size(value: Any, where: str) -> None:
    """Refuse a value that YAML's aliases (&name, *name) make huge or make contain itself, before
    anything copies or writes it: safe_load shares one object per alias, so the file is small and the
    expansion happens later. Counted over the shared objects once each (memoised), so the check itself
    costs the file's size, not the expansion's."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise ConfigError(f"{where} contains itself through a YAML alias (&name ... *name); write the values out")
        open_ids.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1 + sum(size(child) for child in children)
        open_ids.discard(key)
        if total > MAX_YAML_VALUES:
            raise ConfigError(
                f"{where} expands to more than {MAX_YAML_VALUES:,} values through its YAML aliases "
                "(&name, *name: an alias bomb?); write the values out"
            )
        sizes[key] = total
        return total

    size(value)


def _typed(raw: str) -> Any:
    """A command-line or environment value read as YAML (3e-4, 6, [a, b]), except that YAML 1.1's
    other booleans (off, on, yes, no) stay text: `amp=off` means the string "off" (a bool
    key still takes them, see _coerce)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    check_expanded_size(value, f"the value {raw[:40]!r}")
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        return raw.strip()
    return value


def _is_section(name: str) -> bool:
    f = _fields_by_name(Config)[name]
    return f.default_factory is not dataclasses.MISSING


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; presets are in configs/")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {what}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    check_expanded_size(data, f"config file {path}")
    return data


def apply_overrides(base: dict, overrides: dict[str, Any]) -> dict:
    """A copy of base (nested dict) with dotted-key overrides applied."""
    tree = copy.deepcopy(base)
    for key, value in overrides.items():
        _set_dotted(tree, key, value)
    return tree


def from_dict(data: dict) -> Config:
    return validate(_build(Config, data))


def resolve(
    config_path: str | Path | None,
    sets: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Defaults <- YAML file <- environment <- --set, validated."""
    base = load_yaml(config_path) if config_path else {}
    merged = apply_overrides(base, env_overrides(environ))
    merged = apply_overrides(merged, parse_set(sets))
    return from_dict(merged)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'n_layer': 4}} -> {'model.n_layer': 4}; used for diffs and change events."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def diff(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Changed dotted keys -> (old, new)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def describe() -> list[tuple[str, Any, str]]:
    """(dotted key, default, doc) for every knob: used by --help texts and the dashboard form."""
    rows = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                walk(f.default_factory, prefix + f.name + ".")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((prefix + f.name, default, f.metadata.get("doc", "")))

    walk(Config, "")
    return rows
