"""Remedies for each alert code, chosen and ranked from this run's own numbers.

    remedy = for_alert("token_collapse", ctx, evidence, step)   # what a detector passes to fire()

Each code has one rule here: it reads the run's mechanism evidence (ctx.evidence, see
trainer/doctor/evidence.py: the per-step decay lr x weight_decay, weight and embedding norms, the LR
before a jump, the effective batch), the config (ctx.cfg) and the alert's own numbers, and returns
remedies of an honest kind (trainer/doctor/knobs.py): a config change offered as a fork or a new
run, a code change that says what to look for, or no action. No remedy moves a knob in the direction
of the cause: a heavy decay is never met with a larger LR (it would shrink the weights faster still),
a spike after an LR jump never with a larger LR, a too-fast curriculum never with a shorter one
(tests/test_remedies.py checks every code on every failure preset's config).

Every config `set` is a valid input to `python -m trainer fork RUN --set key=value ...` for the
run's config (or the defaults when the run has none): tests apply each with
trainer.config.apply_overrides and validate it with trainer.config.from_dict. Keys that change
parameter shapes (block_size, model.*) are never set, because a fork loads the checkpoint's weights.
"""

from __future__ import annotations

import json

from trainer.doctor import knobs as K
from trainer.doctor.knobs import CODE, CONFIG, FORK, KINDS, NEW, NONE, SCRIPT, STARTS, kind_of  # noqa: F401 - the API
from trainer.rundir import run_format as rf


def _cfg(ctx):
    return K.base_config(ctx)


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "?"


def _token_collapse(ctx, alert, step):
    def otherwise():
        cfg = _cfg(ctx)
        out = []
        if cfg.task == "text_diffusion":
            current = float((cfg.options or {}).get("rounding_weight_final", 0.05))
            target = min(0.05, current / 2)
            out.append(
                K.config(
                    {"options.rounding_weight_final": float(f"{target:.3g}")},
                    f"{K.decay_story(ctx, rf.EMBEDDING_NORM)[0]}, so decay is not what collapses it; the rounding "
                    f"loss's final weight {current:g} -> {target:.3g} stops it from outweighing the denoising "
                    "objective late in training",
                    K.NEW,
                )
            )
        out.append(
            K.more_regularisation(
                ctx,
                f"dropout {cfg.dropout:g}: more dropout keeps the model from answering every position with "
                "the most frequent tokens",
            )
        )
        return out

    # Heavy decay explains a collapse: less decay first (the embedding table's shrink is the evidence).
    return K.decay_first(ctx, rf.EMBEDDING_NORM) if K.heavy_decay(ctx) else otherwise()


def _stuck(ctx, lr_why: str, decay_why: str, *more) -> list:
    """Weights that stopped moving: less decay first when it is heavy (a larger LR would decay
    them faster still), else a larger step, then less regularisation."""
    if K.heavy_decay(ctx):
        return K.decay_first(ctx, rf.DECAYED_NORM)
    return [K.raise_lr(ctx, lr_why), K.less_regularisation(ctx, decay_why), *more]


def _variance_collapse(ctx, alert, step):
    ratio = alert.get("std_ratio")
    spread = f"the predictions' spread is {_num(ratio)} of the targets'" if ratio is not None else "flat outputs"
    return _stuck(
        ctx,
        f"{spread} at a light decay: the model needs a larger step to leave the mean predictor",
        "less decay and looser clipping let the outputs spread",
    )


def _vanishing(ctx, alert, step):
    return _stuck(
        ctx,
        f"grad/norm fell to {_num(alert.get('grad_norm'))}: the weights have stopped moving",
        "decay can shrink activations until the gradients vanish",
    )


def _plateau(ctx, alert, step):
    return _stuck(
        ctx,
        f"the loss has held at {_num(alert.get('level'))}: a larger step can leave a plateau",
        "decay and tight clipping can hold a model on a plateau",
        K.larger_batch(ctx),
    )


def _spike(ctx, alert, step):
    return K.unstable_step(ctx, step, "batch")


def _exploding(ctx, alert, step):
    return K.unstable_step(ctx, step, "clip")


def _non_finite(ctx, alert, step):
    cfg = _cfg(ctx)
    amp = (
        K.config({"amp": "off"}, "amp fp16 overflows at about 65,504 where fp32 does not")
        if ctx.cfg is not None and cfg.amp == "fp16"
        else None
    )
    return [*K.unstable_step(ctx, step, "lr"), amp]


def _rising(ctx, alert, step):
    if "difficulty" not in alert and "at_full_difficulty" not in alert:
        return [K.slower_start(ctx, alert), *K.unstable_step(ctx, step, "lr")]
    cfg = _cfg(ctx)
    cur = cfg.curriculum
    length = cur.preschool_steps if cur.ramp != "none" else _ramp_length(ctx, step)
    if "pace_ratio" in alert and cur.ramp != "linear":
        avg, peak = alert.get("average_pace_per_1000_steps"), alert.get("peak_pace_per_1000_steps")
        return [
            K.config(
                {"curriculum.ramp": "linear", "curriculum.preschool_steps": length},
                f"the ramp raised difficulty at up to {_num(peak)} per 1000 steps, {alert.get('pace_ratio')}x its "
                f"average {_num(avg)}: faster than the model learns. A linear ramp over the same {length} steps "
                "holds the pace at that average. Start a new run: the ramp is set from step 0, and a fork would go "
                "on at the difficulty already reached",
                K.NEW,
            )
        ]
    preschool = max(1, length) * 2
    out = {"curriculum.ramp": "linear", "curriculum.preschool_steps": preschool}
    if preschool >= cfg.max_steps:
        out["max_steps"] = preschool + max(cfg.max_steps, preschool // 4)
    return [
        K.config(
            out,
            f"the loss still rose after the ramp reached full difficulty: the model cannot follow a ramp over "
            f"{cur.preschool_steps} steps; a linear one over {preschool} gives it twice the time per level (a new "
            "run: the ramp is set from step 0)",
            K.NEW,
        )
    ]


def _ramp_length(ctx, step: int) -> int:
    """Steps the logged curriculum took to reach full difficulty (a run without our config)."""
    full = next((s for s, d in ctx.difficulty_history if d >= 0.999), None)
    return max(1, full if full is not None else step)


def _overfitting(ctx, alert, step):
    best, best_step = alert.get("best_val"), alert.get("best_step")
    patience = alert.get("patience") or 3
    return [
        K.early_stopping(
            ctx,
            f"val/loss was best at step {best_step} ({_num(best)}) and rose to {_num(alert.get('val'))}; patience "
            f"{patience} stops there, and the fork starts from that best checkpoint",
            patience,
        ),
        K.more_regularisation(
            ctx,
            f"train/loss went from {_num(alert.get('train_at_best'))} to {_num(alert.get('train'))} while val/loss "
            "rose: the model memorises the training set; dropout and weight decay slow that",
        ),
    ]


def _val_below_train(ctx, alert, step):
    cfg = _cfg(ctx)
    train, val = alert.get("train_loss"), alert.get("val_loss")
    gap = train - val if isinstance(train, float) and isinstance(val, float) else None
    noise = float((cfg.options or {}).get("train_noise", 0) or 0) if cfg.task == "regression" else 0.0
    out = []
    if noise > 0:
        share = f", {noise**2 / gap:.0%} of the gap" if gap and gap > 0 else ""
        out.append(
            K.config(
                {"options.train_noise": 0.0},
                f"options.train_noise {noise:g} adds noise of variance {noise**2:.3g} to the training windows only, "
                f"and the MSE counts it: train/loss {_num(train)} - val/loss {_num(val)} = {_num(gap)}{share}. "
                "Without it both losses are measured on the same data (if the noise is a deliberate augmentation, "
                "this gap is expected)",
            )
        )
    if cfg.dropout > 0:
        out.append(
            K.config(
                {"dropout": 0.0},
                f"dropout {cfg.dropout:g} is active in training but not in eval; without it both losses are "
                "measured the same way, and a gap that stays points at the split",
            )
        )
    if gap and noise > 0 and noise**2 < gap / 2:
        out.reverse()  # the noise explains less than half of the gap: dropout first
    if not out:
        out.append(
            K.config(
                {"val_split": 0.2},
                f"val/loss {_num(val)} below train/loss {_num(train)} with no dropout or training noise: a larger "
                "validation split is another sample of the data; a gap that survives it points at leakage",
                K.NEW,
            )
        )
    return out


def _dead(ctx, alert, step):
    ev = K.run_evidence(ctx)
    dead = list(alert.get("dead") or [])
    shown = ", ".join(dead[:4]) + (f" and {len(dead) - 4} more" if len(dead) > 4 else "")
    why = (
        f"{shown} get a gradient of exactly 0, so no config change connects them: look in the model's forward() "
        "for where their output goes (multiplied by zero or an all-zero mask, detached, or computed but never "
        "used in the loss)"
    )
    moved = [(n, ev.ratios[n]) for n in dead if ev.ratios.get(n)]
    if moved and K.decay_per_step(ctx) > 0:
        name, ratio = moved[0]
        why += (
            f"; meanwhile only weight decay moves them ({name}: update ratio {ratio:.2g} per step, "
            f"lr x weight_decay {K.decay_per_step(ctx):.2g})"
        )
    return [K.code_change(why)]


def sharing_numbers(evidence: dict, against: bool = False) -> str:
    """What a slowdown's evidence says other work took, from whichever the run logged: the cores other
    processes kept busy and the time its threads waited for a core. Each "then -> now", or with
    against, the numbers now and then ", against" the numbers of its best window."""
    said, before = [], []
    for then, now, words, unit in (
        ("other_cpu_baseline", "other_cpu_now", "other processes on this host kept {} busy", "core"),
        ("cpu_wait_baseline", "cpu_wait_now", "its threads waited for a core {} a second", "s"),
    ):
        if evidence.get(then) is not None and evidence.get(now) is not None:
            number = _num(evidence[now]) if against else f"{_num(evidence[then])} -> {_num(evidence[now])}"
            plural = "s" if unit == "core" and _num(evidence[now]) != "1" else ""  # "1 core", "0.5 cores"
            said.append(words.format(f"{number} {unit}{plural}"))
            before.append(_num(evidence[then]))
    return " and ".join(said) + (f", against {' and '.join(before)}" if against and said else "")


def _slowdown(ctx, alert, step):
    if alert.get("competing"):
        return [
            K.no_action(
                f"{sharing_numbers(alert)} while it slowed: it shares the cores with other processes; free them "
                "and the speed comes back, no config change helps"
            )
        ]
    if "cpu_percent_now" in alert:
        return [
            K.no_action(
                f"its CPU use fell with its speed ({_num(alert.get('cpu_percent_baseline'))}% -> "
                f"{_num(alert.get('cpu_percent_now'))}%): another job, throttling, I/O or swap took its cores; free "
                "them and the speed comes back, no config change helps"
            )
        ]
    drop = _num((alert.get("drop") or 0) * 100)
    cpu = (
        "at full CPU use"
        if alert.get("cpu_logged", True)
        else "(no CPU use logged, so a starved machine is not ruled out)"
    )
    if alert.get("memory_grew"):
        return [
            K.smaller_micro_batch(
                ctx,
                f"speed fell {drop}% {cpu} while its memory grew {_num(alert.get('memory_baseline_mb'))} -> "
                f"{_num(alert.get('memory_now_mb'))} MB: half the micro-batch with twice the accumulation keeps the "
                "effective batch and lowers the memory that pressure (swapping, an allocator at its limit) slows",
            )
        ]
    # No config change is what the numbers support: a smaller micro-batch for memory pressure that
    # nothing shows would be a guess, and a rerun could not tell whether it helped or the machine did.
    memory = (
        f"its memory held ({_num(alert.get('memory_baseline_mb'))} -> {_num(alert.get('memory_now_mb'))} MB)"
        if "memory_grew" in alert
        else "no memory logged"
    )
    return [
        K.no_action(
            f"speed fell {drop}% {cpu}, {memory} and no other process took its cores: nothing in its numbers "
            "says why, so no config change is proposed; look at the data pipeline (a loader or disk that stalls), "
            "thermal throttling, or inputs that grew longer"
        )
    ]


def _memory(ctx, alert, step):
    rate = alert.get("mb_per_1000_steps")
    return [
        K.code_change(
            f"memory grew {_num(rate)} MB per 1000 steps at a steady config: usually tensors kept alive across "
            "steps (a list of losses appended without .item(), a growing cache); look for what is kept each step"
        ),
        K.smaller_micro_batch(ctx, "a smaller micro-batch lowers the peak memory while the leak is found"),
    ]


def _lr_anomaly(ctx, alert, step):
    """By what the alert saw: no usable LR (0, negative, non-finite) gets the declared one back; an LR
    off the declared schedule, or one that moved as no schedule does, is something else setting it
    (code), with a constant schedule to take it out of the picture where our trainer runs it."""
    cfg = _cfg(ctx)
    lr = alert.get("lr")
    if lr is None or lr <= 0:
        declared = cfg.lr if cfg.lr > 0 else 1e-3
        return [
            K.config(
                K.lr_to(cfg, declared),
                f"lr is {_num(lr) if lr is not None else 'not a number'}, so no weight moves as it should; "
                f"lr {declared:g} as declared, with min_lr below it (check the schedule's length, minimum and warm-up)",
            )
        ]
    if "expected" in alert:
        seen = f"the logged lr {_num(lr)} is {_num(alert.get('factor'))}x off the declared schedule's {_num(alert['expected'])}"
    elif "config_lr" in alert:
        seen = (
            f"the logged lr {_num(lr)} is {_num(alert.get('factor'))}x the {_num(alert['config_lr'])} the config names"
        )
    else:
        seen = (
            f"the lr moved from {_num(alert.get('before'))} at step {alert.get('before_step')} to {_num(lr)} at "
            f"step {step} ({_num(alert.get('factor'))}x), which no smooth schedule does"
        )
    out = [
        K.code_change(
            f"{seen}: something else sets the optimizer's LR (a scheduler stepped twice, a resume that lost its "
            "position, a hand-set param_groups lr)"
        )
    ]
    if ctx.cfg is not None and "expected" in alert:
        out.append(
            K.config(
                {"schedule": "constant"},
                f"schedule {cfg.schedule} -> constant at lr {cfg.lr:g}: takes the schedule out of the picture while "
                "the cause is found",
            )
        )
    return out


RULES = {
    "non_finite": _non_finite,
    "loss_spike": _spike,
    "loss_rising": _rising,
    "loss_plateau": _plateau,
    "variance_collapse": _variance_collapse,
    "token_collapse": _token_collapse,
    "val_below_train": _val_below_train,
    "overfitting": _overfitting,
    "dead_parameters": _dead,
    "exploding_gradients": _exploding,
    "vanishing_gradients": _vanishing,
    "slowdown": _slowdown,
    "memory_growth": _memory,
    "lr_anomaly": _lr_anomaly,
}


def for_alert(code: str, ctx, evidence: dict, step: int = 0) -> list[dict]:
    """The ranked remedies for an alert of `code` at `step`, from the run's evidence (ctx.evidence),
    its config (ctx.cfg) and the alert's own numbers (evidence)."""
    rule = RULES.get(code)
    found = [r for r in rule(ctx, evidence, step) if r] if rule else []
    if getattr(ctx, "cfg", None) is None:  # not our trainer's config: changes go in the script
        known = K.script_knobs(getattr(ctx, "raw", None) or {})
        found = [r for r in (K.in_script_terms(r, known) for r in found) if r]
    return found


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def command(run_id: str, remedy: dict, run_dir: str | None = None) -> str | None:
    """The command that applies a config remedy as it says to start: a fork of the best checkpoint,
    or a new run from the run's own config.yaml; None for a code change or no action."""
    if kind_of(remedy) != CONFIG or not remedy.get("set") or remedy.get("start") == SCRIPT:
        return None  # a script's change is made in the script: no command of ours applies it
    sets = " ".join(f"{k}={_value(v)}" for k, v in remedy["set"].items())
    if remedy.get("start") == NEW:
        config_file = f"{run_dir or 'runs/' + run_id}/config.yaml"
        return f"python -m trainer run --config {config_file} --run-id {run_id}-new --set {sets}"
    return f"python -m trainer fork {run_id} --from best --run-id {run_id}-fix --set {sets}"
