"""Shared by the tests/test_engine_*.py files: a tiny char_lm config and run-directory readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainer import config as C

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "max_steps": 40,
    "batch_size": 4,
    "block_size": 16,
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32},
    "warmup_steps": 5,
    "log_interval": 1,
    "eval_interval": 10,
    "eval_steps": 2,
    "probe_interval": 7,
    "sample_interval": 15,
    "sample_length": 20,
    "checkpoint_interval": 10,
    "doctor": {"enabled": False},
    "threads": "1",  # tiny models on a shared 2-core machine run faster (and steadier) on one thread
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine run faster (and steadier) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cfg(**overrides) -> C.Config:
    """TINY with overrides; dotted keys given as model__n_layer=2."""
    return C.from_dict(C.apply_overrides(TINY, {k.replace("__", "."): v for k, v in overrides.items()}))


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss; fails if a step appears twice."""
    out = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        if "train/loss" in row:
            assert row["step"] not in out, f"step {row['step']} logged twice"
            out[row["step"]] = row["train/loss"]
    return out


# A subprocess trainer slowed down by a sleep per step (which changes no number), so a test can
# stop or kill it mid-run. It goes through the CLI, as a user would.
DRIVER = """
import sys, time
from trainer.training.tasks.char_lm import CharLM
_loss = CharLM.compute_loss
def slow_loss(self, model, batch, step):
    if model.training:
        time.sleep(float(sys.argv[1]))
    return _loss(self, model, batch, step)
CharLM.compute_loss = slow_loss
from trainer.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def single_thread_env() -> dict:
    # One intra-op thread everywhere, so a run in a subprocess and one in the test process do
    # the same float operations in the same order.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def start_slow_run(cfg: C.Config, runs_dir: Path, run_id: str, delay_s: float = 0.05) -> subprocess.Popen:
    config_file = Path(runs_dir).parent / f"{run_id}.yaml"
    config_file.write_text(C.to_yaml(cfg))
    argv = ["run", "--config", str(config_file), "--run-id", run_id, "--runs-dir", str(runs_dir)]
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(delay_s), *argv],
        cwd=ROOT,
        env=single_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(predicate, timeout_s: float = 60.0, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {predicate}")


def events(run_dir: Path, kind: str | None = None) -> list[dict]:
    return [e for e in read_jsonl(Path(run_dir) / "events.jsonl") if kind is None or e["kind"] == kind]
