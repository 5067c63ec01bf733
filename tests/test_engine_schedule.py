"""Learning-rate schedules, device choice and AMP refusal: pure functions, no training."""

from __future__ import annotations

import math

import pytest
import torch
from engine_tiny import (
    ROOT,
    one_torch_thread,  # noqa: F401  (autouse: one torch thread)
    tiny_cfg,
)

from trainer.config.schedule import lr_at
from trainer.errors import ConfigError, DeviceError
from trainer.training import device as D
from trainer.training.engine import build_task, train


def test_warmup_cosine_rises_then_decays_to_min_lr():
    cfg = tiny_cfg(max_steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-4, schedule="warmup_cosine")
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 101)
    assert lr_at(99, cfg) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(0.55e-3)  # half way down the cosine: the mean of lr and min_lr
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    decay = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_warmup_linear_decays_in_a_straight_line():
    cfg = tiny_cfg(max_steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-4, schedule="warmup_linear")
    assert lr_at(325, cfg) == pytest.approx(1e-4 + 0.75 * 9e-4)
    assert lr_at(775, cfg) == pytest.approx(1e-4 + 0.25 * 9e-4)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)


def test_constant_schedule_ignores_warmup():
    cfg = tiny_cfg(schedule="constant", lr=3e-4, warmup_steps=10)
    assert {lr_at(s, cfg) for s in (0, 5, 39, 400)} == {3e-4}


def test_cosine_and_linear_differ_inside_the_decay():
    cos = tiny_cfg(max_steps=1000, warmup_steps=0, schedule="warmup_cosine", lr=1.0, min_lr=0.0)
    lin = tiny_cfg(max_steps=1000, warmup_steps=0, schedule="warmup_linear", lr=1.0, min_lr=0.0)
    assert lr_at(250, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(250, lin) == pytest.approx(0.75)


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_device_falls_back_to_cpu(cpu_only):
    assert D.pick_device("auto") == torch.device("cpu")


def test_unavailable_device_is_refused_naming_the_available_ones(cpu_only):
    with pytest.raises(DeviceError, match=r"device 'cuda' is not available here; available: cpu"):
        D.pick_device("cuda")
    with pytest.raises(DeviceError, match="available: cpu"):
        D.pick_device("mps")


def test_amp_on_cpu_is_refused_before_the_run_directory_exists(runs_dir):
    for mode in ("bf16", "fp16"):
        with pytest.raises(ConfigError, match=f"amp: '{mode}' needs a CUDA device.*use amp=off"):
            train(tiny_cfg(amp=mode, device="cpu"), runs_dir, f"amp-{mode}")
    assert list(runs_dir.iterdir()) == []


def test_unavailable_device_refused_by_train_before_writing(runs_dir, cpu_only):
    with pytest.raises(DeviceError):
        train(tiny_cfg(device="cuda"), runs_dir, "gpu-run")
    assert list(runs_dir.iterdir()) == []


def test_block_size_beyond_validation_split_names_the_numbers():
    with pytest.raises(ConfigError) as err:
        build_task(tiny_cfg(block_size=300000), torch.device("cpu"))
    assert str(err.value) == "block_size 300000 exceeds the validation split (111540 characters); use at most 111539"


def test_default_preset_is_nanogpts_cpu_run():
    from trainer.config import Config, resolve

    cfg = resolve(ROOT / "configs" / "shakespeare_char.yaml")
    assert cfg == Config()
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd, cfg.block_size, cfg.batch_size) == (
        4,
        4,
        128,
        64,
        12,
    )
    assert (cfg.max_steps, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.beta2, cfg.dropout) == (
        2000,
        1e-3,
        1e-4,
        100,
        0.99,
        0.0,
    )
