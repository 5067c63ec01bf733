"""Remedies come from the run's evidence, are honest about their kind, and never push a cause further.

The evidence here is what each failure preset's run shows (its config, and the mechanism numbers
its probes log: the per-step decay, the embedding and decayed-weight norms, the LR before a jump),
written as records the doctor reads; no trainer runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainer.config import apply_overrides, from_dict
from trainer.doctor import remedies as R
from trainer.doctor.base import RunContext
from trainer.doctor.evidence import RunEvidence
from trainer.rundir import run_format as rf

ROOT = Path(__file__).resolve().parents[1]
PRESETS = [
    "text_diffusion_collapse",
    "regression_variance_collapse",
    "regression_val_below_train",
    "regression_dead_branch",
    "discrete_diffusion_curriculum",
    "shakespeare_char_spike",
]
# The numbers an alert of each code carries (the detectors' evidence keys), enough for every rule.
ALERTS = {
    "non_finite": {"series": ["train/loss"], "last_finite_train_loss": 2.5},
    "loss_spike": {"before": 2.5, "after": 3.5, "robust_z": 9.0},
    "loss_rising": {"best": 1.36, "best_step": 50, "now": 1.72},
    "loss_plateau": {"level": 1.0, "since_step": 50, "improvement": 0.001, "initial": 4.0, "lr": 1e-3, "noise": 0.01},
    "variance_collapse": {"std_ratio": 0.037, "pred_std": 0.054, "target_std": 0.99},
    "token_collapse": {"entropy": 0.0, "punctuation_share": 1.0, "excerpt": ",,,,"},
    "val_below_train": {"val_loss": 0.74, "train_loss": 1.75, "ratio": 0.42, "evals": 2},
    "overfitting": {"best_val": 1.0, "best_step": 200, "val": 1.1, "train_at_best": 0.9, "train": 0.7, "patience": 3},
    "dead_parameters": {"dead": ["branch.weight", "branch.bias"], "count": 2, "total": 20, "probes": 3},
    "exploding_gradients": {"grad_norm": 80.0, "running_median": 1.0, "factor": 80.0, "robust_z": 12.0},
    "vanishing_gradients": {"grad_norm": 1e-8, "established_level": 1.0},
    "slowdown": {"baseline": 30.0, "now": 15.0, "drop": 0.5},
    "memory_growth": {"series": "sys/rss_mb", "baseline_mb": 400.0, "now_mb": 900.0, "mb_per_1000_steps": 250.0},
    "lr_anomaly": {"lr": 5e-4, "expected": 1e-3, "relative_error": 0.5},
}
CURRICULUM = {
    "difficulty": 0.95,
    "peak_pace_per_1000_steps": 13.0,
    "average_pace_per_1000_steps": 4.75,
    "pace_ratio": 2.74,
}


def preset_config(name: str, **changes) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    return from_dict(apply_overrides(raw, changes)).to_dict()


def context(config: dict, lr_jump: tuple[float, float] | None = None, shrink: float = 0.2) -> RunContext:
    """The preset's run as the doctor saw it: its lr rows (with a jump at step 255 when given) and
    three probes whose embedding and decayed-weight norms fall to `shrink` of their initial value."""
    ctx = RunContext(config)
    ctx.evidence = ev = RunEvidence(ctx.warmup_steps)
    lr, wd = config["lr"], config["weight_decay"]
    for step in range(5, 300, 5):
        now = lr_jump[1] if lr_jump and step >= 255 else (lr_jump[0] if lr_jump else lr)
        ev.observe_metrics(step, {rf.LR: now})
    for n, step in enumerate((50, 100, 150)):
        kept = 1 - (1 - shrink) * (n + 1) / 3
        record = {rf.EMBEDDING_NORM: 400 * kept, rf.DECAYED_NORM: 20 * kept, rf.DECAY_PER_STEP: lr * wd}
        if n == 0:
            record[rf.INITIAL] = {rf.EMBEDDING_NORM: 400.0, rf.DECAYED_NORM: 20.0}
        ev.observe_grads(step, {**record, rf.EFFECTIVE_BATCH: config["batch_size"]})
    return ctx


def _worse(code: str, ctx: RunContext, alert: dict) -> dict[str, int]:
    """The knobs behind each code's cause, and the direction that strengthens it (+1: up, -1: down).
    Stated from the mechanisms (configs/*.yaml headers, docs/doctor.md), not from the rules."""
    heavy = ctx.cfg.lr * ctx.cfg.weight_decay > R.K.HEAVY_DECAY_PER_STEP
    if code in ("token_collapse", "variance_collapse", "vanishing_gradients", "loss_plateau") and heavy:
        return {"weight_decay": +1, "lr": +1}  # decoupled decay removes lr x weight_decay per step
    if code == "loss_rising" and "difficulty" in alert:
        return {"curriculum.preschool_steps": -1}  # a shorter ramp is a faster one
    if code in ("loss_spike", "exploding_gradients", "non_finite", "loss_rising"):
        return {"lr": +1, "batch_size": -1, "grad_clip": +1}
    if code == "val_below_train":
        return {"dropout": +1, "options.train_noise": +1}  # what is on in training only
    if code == "overfitting":
        return {"dropout": -1, "weight_decay": -1}
    return {}


def _flat(config: dict, key: str):
    value = config
    for part in key.split("."):
        value = (value or {}).get(part)
    return value


def _clip(value) -> float:
    return float("inf") if value == 0 else value  # grad_clip 0 is "off": the loosest


def every_remedy():
    for preset in PRESETS:
        jumps = [None, (2e-3, 3e-2)] if preset == "shakespeare_char_spike" else [None]
        for jump in jumps:
            config = preset_config(preset, lr=3e-2) if jump else preset_config(preset)
            ctx = context(config, jump)
            for code, alert in ALERTS.items():
                variants = [alert, {**alert, **CURRICULUM}] if code == "loss_rising" else [alert]
                for evidence in variants:
                    for remedy in R.for_alert(code, ctx, evidence, 300):
                        yield preset, code, config, ctx, evidence, remedy


def test_no_remedy_of_any_code_on_any_failure_preset_moves_a_causal_knob_the_wrong_way():
    checked = 0
    for preset, code, config, ctx, evidence, remedy in every_remedy():
        for key, worse in _worse(code, ctx, evidence).items():
            if key not in remedy["set"]:
                continue
            before, after = _flat(config, key), remedy["set"][key]
            if key == "grad_clip":
                before, after = _clip(before), _clip(after)
            assert (after - before) * worse <= 0, (preset, code, key, before, after, remedy["why"])
            checked += 1
    assert checked > 40


def test_every_remedy_has_an_honest_kind_a_valid_set_and_a_why_with_this_runs_numbers():
    for _preset, code, config, _ctx, _evidence, remedy in every_remedy():
        kind = remedy["kind"]
        assert kind in R.KINDS, (code, remedy)
        assert "report 0" not in remedy["why"], (code, remedy["why"])  # the run's numbers, not a report's guess
        if kind == R.CONFIG:
            assert remedy["start"] in R.STARTS and remedy["set"], (code, remedy)
            assert any(ch.isdigit() for ch in remedy["why"]), (code, remedy["why"])
            from_dict(apply_overrides(config, remedy["set"]))  # a valid `fork --set` / `run --set`
        else:
            assert remedy["set"] == {} and "start" not in remedy, (code, remedy)


def test_collapse_under_heavy_decay_lowers_decay_from_the_embedding_shrink_as_a_new_run():
    config = preset_config("text_diffusion_collapse")
    first, second, third = R.for_alert("token_collapse", context(config), ALERTS["token_collapse"], 100)
    assert first["set"] == {"weight_decay": 0.01} and first["start"] == R.NEW  # 0.01 x lr 0.01 = 0.01% per step
    assert "weight_decay 3 x lr 0.01 removes 3% of each decayed weight per step" in first["why"]
    assert "the embedding norm fell from 400 (step 0) to 80 (step 150)" in first["why"]
    assert second["set"]["lr"] == 0.001 and "weight_decay" not in second["set"]
    assert third["set"] == first["set"] and third["start"] == R.FORK and "may stay collapsed" in third["why"]


def test_weights_that_have_not_shrunk_are_forked_not_restarted():
    config = preset_config("text_diffusion_collapse")
    (first, second) = R.for_alert("token_collapse", context(config, shrink=0.9), ALERTS["token_collapse"], 100)
    assert first["set"] == {"weight_decay": 0.01} and first["start"] == R.FORK
    assert second["start"] == R.FORK


def test_a_spike_after_an_lr_jump_goes_back_to_the_lr_the_run_learnt_at():
    config = preset_config("shakespeare_char_spike", lr=3e-2)  # as the resume with LEARNING_RATE=0.03 left it
    first, clip, batch = R.for_alert("loss_spike", context(config, (2e-3, 3e-2)), ALERTS["loss_spike"], 260)
    assert first["set"] == {"lr": 0.002} and first["start"] == R.FORK
    assert "lr rose 15x from 0.002 to 0.03 by step 260, 5 steps before this" not in first["why"]
    assert "lr rose 15x from 0.002 to 0.03 by step 255, 5 steps before this" in first["why"]
    assert clip["set"] == {"grad_clip": 1.0} and "grad_clip is 0 (off)" in clip["why"]
    assert batch["set"] == {"batch_size": 16} and "over 4 samples" in batch["why"]


def test_a_spike_late_in_a_decaying_schedule_halves_the_configs_lr_not_the_logged_one():
    # examples/plain_loop.py --lr 0.5 decays its LR by cosine from args.lr: lr 0.385 at step 19114.
    # Half of that set as lr cut every step 2.6x; half the config's lr halves every step, this one too.
    ctx = RunContext({"lr": 0.5, "steps": 60000}, schema=False)
    ctx.evidence = RunEvidence(0)
    for step, lr in ((19000, 0.386), (19114, 0.385)):
        ctx.evidence.observe_metrics(step, {rf.LR: lr})
    offered = R.for_alert("loss_spike", ctx, ALERTS["loss_spike"], 19114)
    [lower] = [r for r in offered if "lr" in r["set"]]
    assert lower["set"] == {"lr": 0.25} and lower["start"] == R.SCRIPT
    assert "lr 0.385 at step 19114 (lr 0.5 -> 0.25 halves it at every step)" in lower["why"]


def test_a_spike_without_a_jump_on_a_small_batch_leads_with_the_batch():
    config = preset_config("shakespeare_char_spike")
    first, *_ = R.for_alert("loss_spike", context(config), ALERTS["loss_spike"], 260)
    assert first["set"] == {"batch_size": 16}


def test_a_dead_branch_is_a_code_change_naming_the_parameters_and_decay_as_all_that_moves_them():
    config = preset_config("regression_dead_branch")
    ctx = context(config)
    ctx.evidence.observe_grads(160, {rf.UPDATE_RATIOS: {"branch.weight": 1e-5, "branch.bias": 0.0}})
    (remedy,) = R.for_alert("dead_parameters", ctx, ALERTS["dead_parameters"], 160)
    assert remedy["kind"] == R.CODE and remedy["set"] == {}
    assert "branch.weight, branch.bias" in remedy["why"] and "forward()" in remedy["why"]
    assert "update ratio 1e-05 per step" in remedy["why"]


def test_val_below_train_names_the_training_noise_when_it_explains_the_gap():
    config = preset_config("regression_val_below_train")
    noise, dropout = R.for_alert("val_below_train", context(config), ALERTS["val_below_train"], 100)
    assert noise["set"] == {"options.train_noise": 0.0} and "1.01 = 99% of the gap" not in noise["why"]
    assert "train/loss 1.75 - val/loss 0.74 = 1.01, 99% of the gap" in noise["why"]
    assert dropout["set"] == {"dropout": 0.0}
    quiet = preset_config("regression_val_below_train", **{"options.train_noise": 0.2})
    assert R.for_alert("val_below_train", context(quiet), ALERTS["val_below_train"], 100)[0]["set"] == {"dropout": 0.0}


def test_a_front_loaded_curriculum_keeps_its_length_with_a_linear_ramp_in_a_new_run():
    config = preset_config("discrete_diffusion_curriculum")
    (remedy,) = R.for_alert("loss_rising", context(config), {**ALERTS["loss_rising"], **CURRICULUM}, 120)
    assert remedy["set"] == {"curriculum.ramp": "linear", "curriculum.preschool_steps": 200}
    assert remedy["start"] == R.NEW and "13 per 1000 steps, 2.74x its average 4.75" in remedy["why"]


@pytest.mark.parametrize(
    ("remedy", "command"),
    [
        ({"kind": "config", "start": "fork", "set": {"lr": 0.002}, "why": "w"}, "python -m trainer fork r --from best"),
        (
            {"kind": "config", "start": "new", "set": {"lr": 0.002}, "why": "w"},
            "python -m trainer run --config runs/r/",
        ),
        ({"kind": "code", "set": {}, "why": "w"}, None),
    ],
)
def test_a_remedy_becomes_the_command_its_start_says(remedy, command):
    got = R.command("r", remedy)
    assert got == command if command is None else got.startswith(command) and got.endswith("--set lr=0.002")


# What the Hugging Face callback writes to config.yaml (TrainingArguments), in part.
HF_CONFIG = {
    "learning_rate": 5e-4,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "max_grad_norm": 1.0,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "max_steps": 60,
    "logging_steps": 2,
}


def test_a_script_runs_remedies_use_its_own_config_names_and_values_and_no_command_of_ours():
    ctx = RunContext(HF_CONFIG, schema=False)  # trainer.init's run: not our schema
    ctx.evidence = ev = RunEvidence(0)
    for step in range(2, 60, 2):
        ev.observe_metrics(step, {rf.LR: 5e-4})
    seen = 0
    for code, alert in ALERTS.items():
        for remedy in R.for_alert(code, ctx, alert, 40):
            if remedy["kind"] != R.CONFIG:
                continue
            seen += 1
            assert remedy["start"] == R.SCRIPT and set(remedy["set"]) <= set(HF_CONFIG), (code, remedy)
            assert R.command("hf-run", remedy) is None  # a fork of a script's run cannot be made
            assert "batch_size 12" not in remedy["why"]  # our default, never the script's value
    assert seen >= 10
    spike = R.for_alert("loss_spike", ctx, ALERTS["loss_spike"], 40)
    assert {"learning_rate": 0.00025} in [r["set"] for r in spike]  # half its 5e-4, under HF's name
    [batch] = [r for r in spike if "per_device_train_batch_size" in r["set"]]
    assert "over 16 samples (per_device_train_batch_size 16 x gradient_accumulation_steps 1)" in batch["why"]
    # dropout is not in a TrainingArguments dict: no half of the dropout-and-decay remedy
    assert not [r for r in R.for_alert("overfitting", ctx, ALERTS["overfitting"], 40) if r["kind"] == R.CONFIG]


def test_a_script_run_without_the_knob_in_its_config_gets_no_config_change_for_it():
    ctx = RunContext({"epochs": 3}, schema=False)
    ctx.evidence = RunEvidence(0)
    for code, alert in ALERTS.items():
        assert all(r["kind"] != R.CONFIG for r in R.for_alert(code, ctx, alert, 40)), code
