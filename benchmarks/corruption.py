"""Corruption cases (issue 12): damaged run files and damaged checkpoints, each checked for recovery.

    python benchmarks/corruption.py

Run files (FILE_CASES, shared with tests/test_corrupt_files.py, which also drives every dashboard
page over them): a torn last line and garbage lines in each jsonl file, each file missing, a
status.json empty, not JSON, a list or of the wrong types, a config.yaml not YAML, not UTF-8 or a
list. Recovered: the reader, the doctor, `list` and `diagnose` work and say what they left out.

Checkpoints (CHECKPOINT_CASES): a tiny char_lm run (CPU, one thread) that kept step 10-40, last and
best, marked crashed; each case damages some of them and resumes. Recovered: the resume takes the
newest whole checkpoint, says what it passed over, and the run logs the same train/loss, bit for
bit, as an uninterrupted one (or, when nothing is whole, it refuses naming every file and writes
nothing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from trainer.rundir import run_format as rf

ROOT = Path(__file__).resolve().parents[1]

TORN = b'{"step": 61, "train/lo'
GARBAGE = b'garbage\n\x00\xff{]\n["a list"]\n{"no": "step"}\n'
WRONG_TYPES = {"state": 5, "step": "x", "updated": "y", "pid": "z", "max_steps": "q", "best_val_loss": "b"}


def append(name: str, data: bytes):
    def corrupt(run_dir: Path) -> None:
        with open(run_dir / name, "ab") as f:
            f.write(data)

    return corrupt


def replace(name: str, data: bytes | None):
    def corrupt(run_dir: Path) -> None:
        path = run_dir / name
        path.unlink()
        if data is not None:
            path.write_bytes(data)

    return corrupt


# case -> (corruption, words of what the reader and the doctor say they left out; None: nothing)
FILE_CASES = {
    **{
        f"{name} torn last line": (append(name, TORN), f"left out an incomplete last line of {name} (22 bytes)")
        for name in rf.JSONL_FILES
    },
    # not JSON, not an object, an object without an integer step: 4 lines left out
    **{
        f"{name} garbage lines": (append(name, GARBAGE), f"skipped 4 unreadable lines in {name}")
        for name in rf.JSONL_FILES
    },
    **{f"{name} missing": (replace(name, None), None) for name in (*rf.JSONL_FILES, rf.CONFIG_FILE)},
    "status.json empty": (replace(rf.STATUS_FILE, b""), "skipped status.json: it is empty or not a JSON object"),
    "status.json not JSON": (replace(rf.STATUS_FILE, b'{"state": "runn'), "skipped status.json"),
    "status.json a list": (replace(rf.STATUS_FILE, b"[1, 2]"), "skipped status.json"),
    "status.json wrong types": (replace(rf.STATUS_FILE, json.dumps(WRONG_TYPES).encode()), None),
    "config.yaml not YAML": (
        replace(rf.CONFIG_FILE, b"lr: [unclosed\n"),
        "skipped config.yaml: it is not a YAML mapping",
    ),
    "config.yaml not UTF-8": (replace(rf.CONFIG_FILE, b"\xff\xfe\x00lr: 1\n"), "skipped config.yaml"),
    "config.yaml a list": (replace(rf.CONFIG_FILE, b"- 1\n- 2\n"), "skipped config.yaml"),
}


def says(notes, said: str | None) -> bool:
    """notes say `said` (words of one note), or nothing when said is None."""
    return any(said in note for note in notes) if said else not notes


GRADS_LINE = b'{"step":7,"time":1.0,"norms":{"w":0.5},"update_ratios":{"w":0.001}}\n'


def corrupted_run(make_run, runs_dir: Path, case: str, run_id: str = "hurt") -> tuple[Path, str | None]:
    """A fixture run (tests/app_fixtures.make_run, plus a grads line) damaged as FILE_CASES[case]
    says: (its directory, the words of what a reader must say it left out)."""
    make_run(runs_dir, run_id, alert=True)
    run_dir = runs_dir / run_id
    (run_dir / rf.GRADS_FILE).write_bytes(GRADS_LINE)
    corrupt, said = FILE_CASES[case]
    corrupt(run_dir)
    return run_dir, said


def _cut(name: str):
    def corrupt(ckpt_dir: Path) -> None:
        path = ckpt_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return corrupt


def _flip(name: str):
    def corrupt(ckpt_dir: Path) -> None:
        data = bytearray((ckpt_dir / name).read_bytes())
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
        (ckpt_dir / name).write_bytes(bytes(data))

    return corrupt


def _empty(name: str):
    return lambda ckpt_dir: (ckpt_dir / name).write_bytes(b"")


def _temp_file(ckpt_dir: Path) -> None:
    (ckpt_dir / f".{rf.CKPT_LAST}.12345.678{rf.TEMP_SUFFIX}").write_bytes(b"half a checkpoint")


STEP = rf.CKPT_STEP_PATTERN.format
# case -> (damages, the checkpoint the resume must take, or None: refused)
CHECKPOINT_CASES = {
    "last.pt cut in half": ([_cut(rf.CKPT_LAST)], STEP(step=40)),
    "last.pt and the newest step_*.pt cut": ([_cut(rf.CKPT_LAST), _cut(STEP(step=40))], STEP(step=30)),
    "last.pt with changed bytes, newest step_*.pt empty": ([_flip(rf.CKPT_LAST), _empty(STEP(step=40))], STEP(step=30)),
    "best.pt cut (not needed)": ([_cut(rf.CKPT_BEST)], rf.CKPT_LAST),
    "a temp file left by a kill": ([_temp_file], rf.CKPT_LAST),
    "every numbered and last cut: best.pt": (
        [_cut(rf.CKPT_LAST), *(_cut(STEP(step=s)) for s in (10, 20, 30, 40))],
        rf.CKPT_BEST,
    ),
    "nothing whole: refused": (
        [_cut(rf.CKPT_LAST), _cut(rf.CKPT_BEST), *(_cut(STEP(step=s)) for s in (10, 20, 30, 40))],
        None,
    ),
}


def run_file_cases(make_run, root: Path) -> dict[str, str]:
    """Each FILE_CASES case on a fresh fixture run: {case: "" if recovered else what went wrong}."""
    from trainer import doctor
    from trainer.cli import main
    from trainer.rundir.reader import RunReader

    out = {}
    for i, case in enumerate(FILE_CASES):
        runs_dir = root / f"files-{i}"
        runs_dir.mkdir()
        _, said = corrupted_run(make_run, runs_dir, case)
        problems = []
        try:
            if not says(RunReader(runs_dir / "hurt").snapshot().skipped, said):
                problems.append("the reader did not say what it skipped")
            if not says(doctor.diagnose(runs_dir / "hurt")["run"]["skipped"], said):
                problems.append("the doctor did not say what it skipped")
            with contextlib.redirect_stdout(io.StringIO()):
                for argv in (["list"], ["diagnose", "hurt"]):
                    if main([*argv, "--runs-dir", str(runs_dir)]) != 0:
                        problems.append(f"`{argv[0]}` failed")
        except Exception as e:  # noqa: BLE001 - what we measure is whether anything raises
            problems.append(f"{type(e).__name__}: {e}")
        out[case] = "; ".join(problems)
    return out


def _train_losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / rf.METRICS_FILE).read_text().splitlines():
        row = json.loads(line)
        if rf.TRAIN_LOSS in row:
            if row["step"] in out:
                raise AssertionError(f"step {row['step']} logged twice")
            out[row["step"]] = row[rf.TRAIN_LOSS]
    return out


def run_checkpoint_cases(cfg, root: Path) -> dict[str, str]:
    """Each CHECKPOINT_CASES case on a copy of one crashed run: {case: "" if recovered else why not}."""
    import torch

    from trainer.errors import CheckpointError
    from trainer.runs import prepare_resume
    from trainer.training.engine import train

    torch.set_num_threads(1)
    base = root / "base"
    train(cfg, base, "run", quiet=True)
    reference = _train_losses(base / "run")
    status = json.loads((base / "run" / rf.STATUS_FILE).read_text())
    # As if killed after its last checkpoint: a resume from step_30 has 10 steps to train again.
    status.update(state=rf.RUNNING, pid=999_999_999, updated=time.time() - 3600)
    (base / "run" / rf.STATUS_FILE).write_text(json.dumps(status))
    out = {}
    for i, (case, (damages, expected)) in enumerate(CHECKPOINT_CASES.items()):
        runs_dir = root / f"ckpt-{i}"
        shutil.copytree(base, runs_dir)
        run_dir = runs_dir / "run"
        for damage in damages:
            damage(run_dir / rf.CHECKPOINT_DIR)
        try:
            prepared = prepare_resume(runs_dir, "run", [], environ={})
        except CheckpointError as e:
            refused_all = all(name in str(e) for name in (rf.CKPT_LAST, rf.CKPT_BEST))
            out[case] = "" if expected is None and refused_all else f"refused: {e}"
            continue
        if prepared.checkpoint.name != expected:
            out[case] = f"took {prepared.checkpoint.name}, not {expected}"
            continue
        train(prepared.config, runs_dir, "run", mode="resume", checkpoint=prepared.checkpoint, quiet=True)
        leftovers = [p.name for p in (run_dir / rf.CHECKPOINT_DIR).iterdir() if p.name.endswith(rf.TEMP_SUFFIX)]
        losses = _train_losses(run_dir)
        out[case] = (
            "train/loss differs from the uninterrupted run"
            if losses != reference
            else f"temp files left: {leftovers}"
            if leftovers
            else ""
        )
    return out


def _tests_module(name: str):
    """A helper module of tests/ (not a package), loaded by its path: the cases and fixtures stay one copy."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    from trainer import config as C

    make_run = _tests_module("app_fixtures").make_run
    TINY = _tests_module("engine_tiny").TINY  # the tests' tiny char_lm config

    tiny = {**TINY, "device": "cpu", "keep_checkpoints": 4}  # 40 steps, a checkpoint and an eval every 10
    cfg = C.from_dict(tiny)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        files = run_file_cases(make_run, Path(tmp))
        checkpoints = run_checkpoint_cases(cfg, Path(tmp))
        seconds = time.monotonic() - started
    results = {**files, **checkpoints}
    recovered = sum(1 for why in results.values() if not why)
    print(f"corruption cases recovered: {recovered} of {len(results)} ({seconds:.0f} s)")
    print(f"  run files: {sum(1 for w in files.values() if not w)} of {len(files)}")
    print(f"  checkpoints: {sum(1 for w in checkpoints.values() if not w)} of {len(checkpoints)}")
    for case, why in results.items():
        if why:
            print(f"  NOT RECOVERED: {case}: {why}")
    sys.exit(0 if recovered == len(results) else 1)


if __name__ == "__main__":
    main()
