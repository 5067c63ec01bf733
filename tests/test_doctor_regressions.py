"""Detector behaviours found on real runs and at more seeds than the scenario suite's 5, each a
case that once alarmed or stayed silent wrongly.

- loss_rising after a curriculum ramp: the level (median of 11 rows) lags the raw loss, so it still
  climbs for half a window after the ramp ends; a healthy linear ramp (configs/discrete_diffusion.yaml,
  400 steps) was warned about 40 steps after full difficulty.
- overfitting on a noisy healthy run: the MAD of a dozen second differences read the eval noise at
  a third of its size (healthy_noisy, seed 8, of benchmarks/doctor_suite.py --seeds 20).
- variance_collapse under heavy weight decay (configs/regression_variance_collapse.yaml): report
  001's first remedy, a 3x LR, would triple AdamW's decoupled decay as well.
- loss_plateau after a spike (configs/shakespeare_char_spike.yaml, resumed with LEARNING_RATE=0.03):
  its window reached back before the jump, so it said "stayed at 3.273 for 250 steps" of a loss
  that had jumped from 2.51 to 3.55 only 40 steps earlier.
"""

import math

import doctor_scenarios as ds

from trainer.config import Config, apply_overrides, from_dict
from trainer.doctor import OnlineDoctor, diagnose
from trainer.doctor import remedies as R
from trainer.doctor.base import RunContext
from trainer.tasks.options import curriculum_difficulty

RAMP = {"curriculum": {"ramp": "linear", "preschool_steps": 100, "start": 0.1}}


def _curriculum_run(loss_after_ramp, max_steps=400, log_interval=10) -> list[dict]:
    """Alerts of a run whose loss follows a linear 100-step ramp, then loss_after_ramp(step)."""
    config = from_dict(apply_overrides(Config().to_dict(), {"max_steps": max_steps, "schedule": "constant", "warmup_steps": 50, **RAMP}))
    doctor = OnlineDoctor(config.to_dict())
    for step in range(log_interval, max_steps + 1, log_interval):
        difficulty = curriculum_difficulty(step, config.curriculum)
        wobble = 0.03 * ((step * 7919) % 11 - 5) / 5  # deterministic noise of +-3%
        loss = (2.0 * difficulty if difficulty < 1.0 else loss_after_ramp(step)) * (1 + wobble)
        doctor.observe("metrics", {"step": step, "train/loss": loss, "lr": 1e-3, "curriculum/difficulty": difficulty})
    return doctor.alerts


def test_loss_flat_after_a_linear_ramp_is_not_a_warning():
    alerts = _curriculum_run(lambda step: 2.0)
    assert not [a for a in alerts if a["severity"] != "info"], alerts


def test_loss_still_rising_long_after_the_ramp_is_a_warning():
    alerts = _curriculum_run(lambda step: 2.0 + 0.004 * (step - 100))  # +60% by step 400
    warnings = [a for a in alerts if a["code"] == "loss_rising" and a["severity"] == "warning"]
    assert len(warnings) == 1, alerts
    assert "cannot follow" in warnings[0]["message"] and warnings[0]["step"] > 120


def test_noisy_healthy_run_with_a_low_mad_is_not_overfitting(tmp_path):
    scenario = ds.make("healthy_noisy", 8)
    result = diagnose(ds.write_run(scenario, tmp_path))
    assert not [a for a in result["alerts"] if a["severity"] != "info"], result["alerts"]


def test_overfitting_in_the_same_noise_is_still_found(tmp_path):
    scenario = ds.make("overfitting", 8)
    result = diagnose(ds.write_run(scenario, tmp_path))
    assert ds.evaluate(scenario, result["alerts"])["on_time"], result["alerts"]


def _variance_collapse_remedies(**config) -> list[dict]:
    ctx = RunContext(from_dict(apply_overrides(Config().to_dict(), config)).to_dict())
    return R.lr_or_decay_first(ctx, R.raise_lr(ctx, "lr"), R.less_regularisation(ctx, "decay"))


def test_usual_weight_decay_keeps_the_reports_order_raise_lr_first():
    first, second = _variance_collapse_remedies(lr=1e-3, weight_decay=0.1)
    assert first["set"]["lr"] == 0.003 and second["set"]["weight_decay"] == 0.01


def test_heavy_weight_decay_is_lowered_first_and_the_lr_left_alone():
    remedies = _variance_collapse_remedies(lr=1e-3, weight_decay=100.0)
    assert [r["set"]["weight_decay"] for r in remedies] == [0.1]  # not 10: still 1% of each weight per step
    assert "10% of every weight per step" in remedies[0]["why"]
    assert not any("lr" in r["set"] for r in remedies)


SPIKE_RESUME = 250  # configs/shakespeare_char_spike.yaml: 250 steps at lr 2e-3, then resumed at 0.03


def _spike_run_alerts(resumed_until: int) -> list[dict]:
    """The spike preset's shape: 3.9 -> 2.5 by step 250 (log every 5), then +40% in two rows and a
    slow partial recovery that holds 3.0-3.3, as measured on the real run."""
    config = from_dict(
        apply_overrides(
            Config().to_dict(),
            {"max_steps": resumed_until, "schedule": "constant", "warmup_steps": 0, "lr": 2e-3, "log_interval": 5},
        )
    )
    doctor = OnlineDoctor(config.to_dict())
    for step in range(5, resumed_until + 1, 5):
        wobble = 0.015 * ((step * 7919) % 11 - 5) / 5  # deterministic noise of +-1.5%
        if step <= SPIKE_RESUME:
            loss, lr = 2.5 + 1.5 * math.exp(-step / 40), 2e-3
        elif step == SPIKE_RESUME + 5:
            loss, lr = 3.2, 0.03
        else:  # 3.55 at step 260, back to ~3.2 by step 300, then held
            loss, lr = 3.15 + 0.4 * math.exp(-(step - SPIKE_RESUME - 10) / 30), 0.03
        doctor.observe("metrics", {"step": step, "train/loss": loss * (1 + wobble), "lr": lr})
    return doctor.alerts


def test_plateau_after_a_spike_never_claims_time_before_the_jump():
    alerts = _spike_run_alerts(350)
    spike = next(a for a in alerts if a["code"] == "loss_spike")
    assert SPIKE_RESUME < spike["step"] <= SPIKE_RESUME + 10, alerts
    for plateau in (a for a in alerts if a["code"] == "loss_plateau"):
        # the span it states ("for N steps", since_step) must lie after the jump
        assert plateau["evidence"]["since_step"] >= spike["step"], plateau["message"]


def test_a_level_held_long_after_a_spike_is_still_a_plateau():
    alerts = _spike_run_alerts(1500)  # 3.15 held for 1200 steps after the jump, lr still 0.03
    plateaus = [a for a in alerts if a["code"] == "loss_plateau"]
    assert len(plateaus) == 1, alerts
    since, step = plateaus[0]["evidence"]["since_step"], plateaus[0]["step"]
    assert since > SPIKE_RESUME + 10 and f"for {step - since} steps" in plateaus[0]["message"]
