"""The run directory format: every file name, state, event kind and series name in one place.

This module is the single source of truth for the public contract described in
docs/run-format.md. The writer, the reader, the doctor, the CLI and the dashboard all import
their names from here; nothing else spells a file name.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.errors import RunIdError, RunNotFound

# 2: throughput in samples is speed/samples_per_s (version 1 logged it as speed/tokens_per_s).
# Readers open version-1 runs unchanged.
FORMAT_VERSION = 2

# Files inside runs/<run_id>/
CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
GRADS_FILE = "grads.jsonl"
SAMPLES_FILE = "samples.jsonl"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"  # stdout/stderr of a trainer started in the background
TRIAL_FILE = "trial.json"  # a remedy trial's group, parent and remedy (trainer/runs/trials.py)
LAUNCH_FILE = "launch.json"  # the background launcher's child (pid, create time) until status.json exists
CHECKPOINT_DIR = "checkpoints"
CONTROL_DIR = "control"
STOP_FILE = "stop"  # control/stop: finish the step, checkpoint, exit 0
LOCK_FILE = ".writer.lock"  # flock held by the one process writing the run (trainer.rundir.lock)
RESERVE_FILE = ".space-reserve"  # space kept back to record a full disk (trainer.rundir.disk)
TEMP_SUFFIX = ".tmp"  # atomic writes go through ".<name>....tmp" beside the final name
# A run's data: the files its reader (trainer.rundir.reader) and the doctor read. Whether a run
# changed means whether one of these (or the run directory itself) did.
JSONL_FILES = (METRICS_FILE, GRADS_FILE, SAMPLES_FILE, EVENTS_FILE)
DATA_FILES = (*JSONL_FILES, STATUS_FILE, CONFIG_FILE)
# A disposable columnar cache of metrics.jsonl beside it (trainer.rundir.metrics_cache): Arrow IPC
# segments with their min/max summaries and a meta file naming the bytes they cover. Readers write
# it; deleting it only costs the next open a full parse. A new version makes readers rebuild it.
METRICS_CACHE_DIR = "metrics.cache"
METRICS_CACHE_META = "meta.json"
METRICS_CACHE_VERSION = 1

# status.json "state"
STARTING, RUNNING, STOPPING, STOPPED, FINISHED, FAILED = (
    "starting",
    "running",
    "stopping",
    "stopped",
    "finished",
    "failed",
)
STATES = (STARTING, RUNNING, STOPPING, STOPPED, FINISHED, FAILED)
LIVE_STATES = (STARTING, RUNNING, STOPPING)
# Not written by the trainer: derived by readers when a live state's heartbeat is stale and
# its process is gone.
CRASHED = "crashed"
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
# status.json's pid_create_time is psutil's: the same process read twice agrees to well under
# this, while a reused pid is created at least a scheduler tick (10 ms) later.
CREATE_TIME_TOLERANCE_S = 0.01

# status.json "writer": what wrote the run. Absent in runs of our trainer (its "argv" is the
# `python -m trainer` command that resume and fork repeat); "api" for a user's own script through
# trainer.init, which neither can restart.
STATUS_WRITER = "writer"
WRITER_API = "api"
# status.json "threads": the torch intra-op threads our trainer (or trainer.init(threads=...)) runs;
# "threads_reason": the numbers they came from ("2 physical cores, 0.9 busy with other work, 2 runs of ours").
STATUS_THREADS = "threads"
STATUS_THREADS_REASON = "threads_reason"
# status.json "imported_from": the source of a run `python -m trainer import` wrote (its logger's files).
STATUS_IMPORTED_FROM = "imported_from"
# status.json "best_val_loss": the lowest val/loss logged so far (null before the first eval), written
# by our trainer, trainer.init's runs and imports alike: the runs table and `list` read it from here.
STATUS_BEST_VAL_LOSS = "best_val_loss"

# events.jsonl "kind"
EVENT_KINDS = (
    "start",
    "resume",
    "fork",
    "config_change",
    "checkpoint",
    "stop",
    "finish",
    "error",
    "alert",
)
SEVERITIES = ("info", "warning", "critical")

TIME = "time"  # every record's wall-clock time, unix seconds (when it was written)
# Core metric series (metrics.jsonl keys besides "step" and "time").
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
LR = "lr"
GRAD_NORM = "grad/norm"
EPOCH = "epoch"  # fractional epochs done, as the Hugging Face and Lightning trainers count them
PRED_STD = "out/pred_std"
TARGET_STD = "out/target_std"
VARIANCE_RATIO = "out/variance_ratio"
STEPS_PER_S = "speed/steps_per_s"
TOKENS_PER_S = "speed/tokens_per_s"
SAMPLES_PER_S = "speed/samples_per_s"
# A task's throughput series, by what it counts (Task.unit).
THROUGHPUT = {"tokens": TOKENS_PER_S, "samples": SAMPLES_PER_S}
RSS_MB = "sys/rss_mb"
CPU_PERCENT = "sys/cpu_percent"
# Cores busy with other processes on the host since the previous row (host CPU time minus this
# process's, over the wall time): what tells a trainer starved by a competing job from one doing more work.
OTHER_CPU = "sys/other_cpu"
# Seconds a second the process's threads spent ready to run but waiting for a core, summed over them,
# since the previous row (the kernel's run-queue delay): what other work on the cores costs this run,
# whatever the host's size (a browser's quarter core takes nothing from a trainer on 2 of 16 cores,
# and stalls one that uses both of 2).
CPU_WAIT = "sys/cpu_wait"
CUDA_MEM_MB = "sys/cuda_mem_mb"
CUDA_MEM_PEAK_MB = "sys/cuda_mem_peak_mb"
CURRICULUM_DIFFICULTY = "curriculum/difficulty"
CORE_SERIES = (
    TRAIN_LOSS,
    VAL_LOSS,
    LR,
    GRAD_NORM,
    PRED_STD,
    TARGET_STD,
    VARIANCE_RATIO,
    STEPS_PER_S,
    TOKENS_PER_S,
    SAMPLES_PER_S,
    RSS_MB,
    CPU_PERCENT,
    CUDA_MEM_MB,
)

# grads.jsonl record fields (one record per probe). The mechanism fields are what the doctor's
# remedies reason from: is decay shrinking the weights, has the embedding table collapsed, what LR
# and batch was the step taken with (docs/run-format.md).
GRAD_NORMS = "norms"
UPDATE_RATIOS = "update_ratios"
WEIGHT_NORMS = "weight_norms"
EMBEDDING_NORM = "embedding_norm"
DECAYED_NORM = "decayed_norm"
INITIAL = "initial"  # a run's first probe only: {embedding_norm, decayed_norm} before its first step
PROBE_LR = "lr"
DECAY_PER_STEP = "decay_per_step"
EFFECTIVE_BATCH = "effective_batch"

# Checkpoint file names inside checkpoints/
CKPT_LAST = "last.pt"
CKPT_BEST = "best.pt"
CKPT_STEP_PATTERN = "step_{step:08d}.pt"
CKPT_STEP_RE = re.compile(r"^step_(\d{8})\.pt$")

RUN_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def id_part(name: str, limit: int = 64) -> str:
    """name made safe for a run id: other characters become '-', ends trimmed, at most limit long
    ('' when nothing is left: the caller picks a fallback)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")[:limit]


def validate_run_id(run_id: str) -> str:
    """Return run_id if it is a safe directory name, else raise RunIdError saying what is allowed."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or run_id in (".", ".."):
        raise RunIdError(
            f"invalid run id {run_id!r}: use 1-64 characters from letters, digits, '.', '_' and '-' (not '.' or '..')"
        )
    return run_id


def run_path(runs_dir: str | Path, run_id: str) -> Path:
    """The directory of run_id under runs_dir; the id is validated so no path can escape."""
    return Path(runs_dir) / validate_run_id(run_id)


def holds_only_launch_files(run_dir: str | Path) -> bool:
    """Is this directory what a background launcher leaves before its trainer writes anything?
    train.log, launch.json, trial.json for a remedy trial, and control/stop if Stop was pressed while the run was
    starting. Such a directory is free for a new run; anything else in it means the run exists."""
    for entry in Path(run_dir).iterdir():
        # the lock: a start that died before writing anything
        if entry.name in (LOG_FILE, LOCK_FILE, TRIAL_FILE, LAUNCH_FILE):
            continue
        if entry.name == CONTROL_DIR and entry.is_dir() and all(p.name == STOP_FILE for p in entry.iterdir()):
            continue
        return False
    return True


def existing_run_path(runs_dir: str | Path, run_id: str) -> Path:
    """Like run_path, but the run must exist."""
    path = run_path(runs_dir, run_id)
    if not path.is_dir():
        raise RunNotFound(f"no run {run_id!r} under {Path(runs_dir)}; `python -m trainer list` shows the runs")
    return path
