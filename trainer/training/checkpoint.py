"""Checkpoint files: written atomically, kept as last / best / every checkpoint_interval steps.

A checkpoint is one dict saved with torch.save (see engine.TrainState for its keys). It is first
written to a temporary file in the same directory and then renamed over the final name, so a
reader (or a resume after kill -9) only ever sees a complete file.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import torch

from trainer.errors import CheckpointError
from trainer.rundir import faults
from trainer.rundir import run_format as rf


def capture_rng() -> dict:
    """Every global RNG state the training step may touch (python, numpy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    state["numpy"] = np.random.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _WriteErrors:
    """A file for torch.save that keeps the OSError of a failed write: torch reports a full disk
    only as "[enforce fail at inline_container.cc] unexpected pos", with no errno."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file beside path, fsync, then rename over path. A failed write
    (a full disk) raises its OSError and leaves path as it was, with no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{rf.TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            out = _WriteErrors(f)
            try:
                torch.save(obj, out)
            except RuntimeError:
                if out.error is not None:
                    raise out.error from None
                raise
            f.flush()
            faults.point("checkpoint")
            os.fsync(f.fileno())
        os.replace(tmp, path)
        faults.point("checkpointed")
    except OSError as e:
        if e.errno is not None:  # a real OS error: name the file meant, not the temp file
            e.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def copy_atomic(src: Path, dst: Path) -> None:
    """Make dst a complete copy of src (a hard link when the filesystem allows), atomically."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link{rf.TEMP_SUFFIX}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at path, on CPU; CheckpointError saying what to do if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; a run keeps last.pt, best.pt and step_*.pt")
    try:
        # weights_only=False: our checkpoints hold RNG states (tuples, numpy arrays) besides
        # tensors. Only load checkpoints you (or this trainer) wrote.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: {e}); pick another") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a trainer checkpoint (no model/step); pick another")
    return state


def load_weights(model: torch.nn.Module, state: dict, what: str, fix: str) -> None:
    """state's weights into model, or CheckpointError naming `what` did not fit and how to `fix` it."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{what} does not fit this config's model ({str(e).splitlines()[-1].strip()}); {fix}"
        ) from None


def init_weights(model: torch.nn.Module, path: str | Path) -> int:
    """Load a checkpoint's weights into model (init_from: fine-tuning); returns the step they came from.

    Only the weights: optimizer, schedule and data position start afresh, as in any fine-tune.
    """
    state = load_checkpoint(path)
    keys = {k: v for k, v in (state.get("config") or {}).items() if k in ("task", "model", "block_size")}
    load_weights(
        model,
        state,
        f"init_from: {path}",
        f"use the model keys of the run that wrote it ({keys}) or leave init_from empty",
    )
    return int(state["step"])


def weights_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def step_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """The periodic checkpoints in ckpt_dir as (step, path), oldest first."""
    found = []
    for p in Path(ckpt_dir).iterdir():
        m = rf.CKPT_STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


class CheckpointWriter:
    """Writes a state once and links it under each name it should carry."""

    def __init__(self, ckpt_dir: Path, keep: int):
        self.dir = Path(ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep  # periodic step_*.pt kept; 0 keeps none

    def write(
        self, state: dict, step: int, *, last: bool = True, best: bool = False, periodic: bool = False
    ) -> list[str]:
        """Save state under the requested names; returns the file names written."""
        names = []
        if last:
            names.append(rf.CKPT_LAST)
        if best:
            names.append(rf.CKPT_BEST)
        if periodic and self.keep > 0:
            names.append(rf.CKPT_STEP_PATTERN.format(step=step))
        if not names:
            return []
        first = self.dir / names[0]
        save_atomic(state, first)
        for name in names[1:]:
            copy_atomic(first, self.dir / name)
        if periodic:
            self.prune()
        return names

    def prune(self) -> None:
        periodic = step_checkpoints(self.dir)
        for _, path in periodic[: max(0, len(periodic) - self.keep)]:
            path.unlink(missing_ok=True)
