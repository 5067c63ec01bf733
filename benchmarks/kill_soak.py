"""kill -9 soak (issue 12): the default run killed with SIGKILL at random moments and resumed at once,
then checked against an uninterrupted run of the same config.

    python benchmarks/kill_soak.py                 # 20 kills of configs/shakespeare_char.yaml, made short
    python benchmarks/kill_soak.py --kills 5 --seed 3 --keep /tmp/soak

Each life of the run is a real `python -m trainer run` or `resume` (CPU, one thread, fixed seed),
killed at one of four moments, picked at random:
- step: after a random number (1-25) of new metric rows, plus up to 50 ms: inside a step, an eval,
  a sample or a checkpoint, wherever the process happens to be;
- checkpoint: at its 1st-2nd checkpoint write, after torch.save wrote the temp file, before the
  fsync and rename (trainer.rundir.faults, TRAINER_FAULT=checkpoint:kill:N);
- checkpointed: just after its first checkpoint file is complete, before anything else is
  written (TRAINER_FAULT=checkpointed:kill:1);
- flush: in its 1st-4th metrics flush, with half the bytes written, leaving a torn line
  (TRAINER_FAULT=flush:kill:N).
The first kill waits for the first checkpoint: before it there is nothing to resume. After the last
kill, a resume runs to max_steps. Then:
- every step 1..max_steps has exactly one train/loss row, and every eval, sample and probe step
  one row (metrics, samples, grads), with no malformed line in any file;
- train/loss and val/loss equal the uninterrupted run's at every step, bit for bit;
- every checkpoint on disk passes its zip checks and loads, and no temp file is left.
tests/test_kill_soak.py runs soak() with a few kills on a tiny config.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.rundir import faults
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import parse_lines
from trainer.runs.resume import checkpoint_damage

ROOT = Path(__file__).resolve().parents[1]

# The default preset made short, with frequent checkpoints, evals and samples; one thread, so the
# soaked run and the reference do the same float operations in the same order.
SOAK_SETS = [
    "device=cpu",
    "threads=1",
    "max_steps=400",
    "log_interval=1",
    "checkpoint_interval=20",
    "keep_checkpoints=3",
    "eval_interval=50",
    "eval_steps=20",
    "sample_interval=50",
    "sample_length=40",
    "probe_interval=10",
]
MOMENTS = ("step", "checkpoint", "checkpointed", "flush")
LIFE_TIMEOUT_S = 300.0


@dataclass
class SoakResult:
    kills: int = 0  # lives ended by SIGKILL
    moments: dict[str, int] = field(default_factory=dict)  # kills per moment
    problems: list[str] = field(default_factory=list)  # what the checks found; empty when all passed
    steps: int = 0  # train/loss rows checked against the reference
    checkpoints: int = 0  # checkpoint files that loaded
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return not self.problems


def _env(fault: str = "") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), faults.ENV: fault}
    for name in ("BATCH_SIZE", "BLOCK_SIZE", "LEARNING_RATE", "LR", "MAX_STEPS", "TRAINING_STEPS"):
        env.pop(name, None)
    return env


def _trainer(argv: list[str], fault: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", *argv, "--quiet"],
        cwd=ROOT,
        env=_env(fault),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(path: Path) -> tuple[list[dict], int]:
    """(records, malformed lines) of a jsonl file; a torn last line counts as malformed here."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    records, malformed = parse_lines(data if data.endswith(b"\n") or not data else data + b"\n")
    return records, malformed


def _metric_rows(run_dir: Path) -> int:
    try:
        return (run_dir / rf.METRICS_FILE).read_bytes().count(b"\n")
    except OSError:
        return 0


def _has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST).is_file()


def _kill_at_a_step(proc: subprocess.Popen, run_dir: Path, rng: random.Random, first: bool) -> None:
    """SIGKILL after 1-25 new metric rows (and after the first checkpoint in the first life)."""
    deadline = time.monotonic() + LIFE_TIMEOUT_S
    start_rows, wanted = _metric_rows(run_dir), rng.randint(1, 25)
    while proc.poll() is None and time.monotonic() < deadline:
        ready = _has_checkpoint(run_dir) if first else True
        if ready and _metric_rows(run_dir) - start_rows >= wanted:
            time.sleep(rng.uniform(0, 0.05))
            proc.send_signal(signal.SIGKILL)
            return
        if first and not ready:
            start_rows = _metric_rows(run_dir)
        time.sleep(0.005)


def _life(argv: list[str], run_dir: Path, moment: str, rng: random.Random, first: bool) -> int:
    """One life of the run, killed at `moment`; returns its exit code (-9 when killed)."""
    fault = ""
    if moment == "checkpoint":
        fault = f"checkpoint:kill:{rng.randint(1, 2)}"
    elif moment == "checkpointed":  # the life's first: its rows since the resume must be on disk by then
        fault = "checkpointed:kill:1"
    elif moment == "flush":
        fault = f"flush:kill:{rng.randint(1, 4)}"
    proc = _trainer(argv, fault)
    if moment == "step":
        _kill_at_a_step(proc, run_dir, rng, first)
    try:
        _, err = proc.communicate(timeout=LIFE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-2000:]}")
    return proc.returncode


def _losses(records: list[dict], key: str, problems: list[str], what: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for row in records:
        if key in row:
            if row["step"] in out:
                problems.append(f"{what}: step {row['step']} has {key} twice")
            out[row["step"]] = row[key]
    return out


def _check_once(run_dir: Path, name: str, problems: list[str]) -> list[dict]:
    records, malformed = _rows(run_dir / name)
    if malformed:
        problems.append(f"{name}: {malformed} malformed line(s) left")
    if name in (rf.SAMPLES_FILE, rf.GRADS_FILE):
        steps = [r["step"] for r in records]
        if len(steps) != len(set(steps)):
            problems.append(f"{name}: a step has two rows")
    return records


def check(run_dir: Path, reference: Path, max_steps: int, result: SoakResult) -> None:
    """Compare the soaked run with the uninterrupted reference; problems go into result.problems."""
    problems = result.problems
    metrics = _check_once(run_dir, rf.METRICS_FILE, problems)
    for name in (rf.SAMPLES_FILE, rf.GRADS_FILE, rf.EVENTS_FILE):
        soaked = _check_once(run_dir, name, problems)
        if name != rf.EVENTS_FILE:
            expected = [r["step"] for r in _rows(reference / name)[0]]
            if [r["step"] for r in soaked] != expected:
                problems.append(f"{name}: steps differ from the uninterrupted run's")
    ref_metrics = _rows(reference / rf.METRICS_FILE)[0]
    for key in (rf.TRAIN_LOSS, rf.VAL_LOSS):
        got = _losses(metrics, key, problems, "soaked")
        want = _losses(ref_metrics, key, [], "reference")
        if key == rf.TRAIN_LOSS:
            if sorted(got) != list(range(1, max_steps + 1)):
                missing = sorted(set(range(1, max_steps + 1)) - set(got))
                problems.append(f"train/loss: steps missing {missing[:10]}{'...' if len(missing) > 10 else ''}")
            result.steps = sum(1 for s in got if s in want and got[s] == want[s])
        differ = [s for s in want if got.get(s) != want[s]]
        if differ:
            problems.append(f"{key}: differs from the uninterrupted run at {len(differ)} step(s), first {differ[0]}")
    ckpt_dir = run_dir / rf.CHECKPOINT_DIR
    for path in sorted(ckpt_dir.iterdir()):
        if path.name.endswith(rf.TEMP_SUFFIX):
            problems.append(f"checkpoints/{path.name}: a temp file left behind")
            continue
        damage = checkpoint_damage(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            assert isinstance(state, dict) and "model" in state
            result.checkpoints += 1
        except Exception as e:
            damage = damage or f"{type(e).__name__}: {e}"
        if damage:
            problems.append(f"checkpoints/{path.name}: {damage}")


def soak(
    runs_dir: Path,
    config: Path,
    sets: list[str],
    max_steps: int,
    kills: int,
    seed: int = 0,
    moments: list[str] | None = None,
) -> SoakResult:
    """Run the reference, then the soaked run killed `kills` times; returns what was found.
    moments: the moment of each kill in order (default: the first "step", then random)."""
    run_id = "soak"
    started = time.monotonic()
    rng = random.Random(seed)
    result = SoakResult()
    common = ["--config", str(config), "--runs-dir", str(runs_dir), "--set", *sets]
    reference = subprocess.run(
        [sys.executable, "-m", "trainer", "run", "--run-id", "reference", *common, "--quiet"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    if reference.returncode != 0:
        raise RuntimeError(f"the reference run failed: {reference.stderr.strip()[-2000:]}")
    run_dir = runs_dir / run_id
    argv = ["run", "--run-id", run_id, *common]
    for life in range(kills):
        moment = moments[life] if moments else "step" if life == 0 else rng.choice(MOMENTS)
        code = _life(argv, run_dir, moment, rng, first=life == 0)
        if code == 0:
            break  # it reached max_steps before this kill: the soak ran out of steps
        result.kills += 1
        result.moments[moment] = result.moments.get(moment, 0) + 1
        argv = ["resume", run_id, "--runs-dir", str(runs_dir)]
    if _life(argv, run_dir, "none", rng, first=False) != 0:
        result.problems.append("the last resume did not finish")
    check(run_dir, runs_dir / "reference", max_steps, result)
    result.seconds = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="picks the moments and the kill points")
    parser.add_argument("--keep", type=Path, help="runs directory to keep (default: a temp dir, deleted)")
    args = parser.parse_args()
    max_steps = int(next(s for s in SOAK_SETS if s.startswith("max_steps=")).split("=")[1])
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.keep or Path(tmp) / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        config = ROOT / "configs" / "shakespeare_char.yaml"
        result = soak(runs_dir, config, SOAK_SETS, max_steps, args.kills, args.seed)
    moments = ", ".join(f"{n} {m}" for m, n in sorted(result.moments.items()))
    print(f"kills survived with identical curves: {result.kills if result.identical else 0} of {result.kills}")
    print(f"  moments: {moments}; {result.steps} of {max_steps} steps' train/loss bit for bit")
    print(f"  checkpoints on disk that load: {result.checkpoints}; {result.seconds:.0f} s")
    for problem in result.problems:
        print(f"  PROBLEM: {problem}")
    print(json.dumps({"kills": result.kills, "identical": result.identical, "moments": result.moments}))
    sys.exit(0 if result.identical else 1)


if __name__ == "__main__":
    main()
