"""Shared test fixtures. Tests run on 2 cores: keep models tiny and runs to a few dozen steps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Environment overrides (BATCH_SIZE=...) must not leak from the developer's shell into tests.
for _name in ("BATCH_SIZE", "BLOCK_SIZE", "LEARNING_RATE", "LR", "MAX_STEPS", "TRAINING_STEPS"):
    os.environ.pop(_name, None)


@pytest.fixture
def runs_dir(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def spawn(tmp_path):
    """spawn(script_text, *args) runs a stand-in Python script as a child process; every child still
    running at the end of the test is killed."""
    children = []

    def start(script_text: str, *args) -> subprocess.Popen:
        script = tmp_path / f"stand_in_{len(children)}.py"
        script.write_text(script_text)
        child = subprocess.Popen([sys.executable, str(script), *map(str, args)])
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
