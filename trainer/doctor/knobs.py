"""The building blocks of remedies: each makes one remedy of an honest kind, with a `why` that
states the mechanism in this run's numbers (trainer/doctor/evidence.py and the config).

- config(set, why, start): a config change, tried as a fork of the best checkpoint ("fork") or
  as a new run from scratch ("new"); `why` says which and why (a fork from weights that have
  already collapsed may stay collapsed);
- code_change(why): no config change can fix it; `why` says what to look for in the code;
- no_action(why): nothing in the run to change (a starved machine).

Which ones an alert gets, and in what order, is decided per code in trainer/doctor/remedies.py.
"""

from __future__ import annotations

import math
import re

from trainer.config import Config, from_dict
from trainer.doctor.evidence import NormTrack, RunEvidence
from trainer.rundir import run_format as rf

CONFIG, CODE, NONE = "config", "code", "none"
KINDS = (CONFIG, CODE, NONE)
FORK, NEW = "fork", "new"
STARTS = (FORK, NEW)
# A run our trainer did not write (a script through trainer.init, an import): we cannot fork or
# restart it, so a config change is one to make in the script that wrote it, under its own names.
SCRIPT = "script"

# Our knob -> the names other programs' configs give it (our own, Hugging Face's TrainingArguments,
# Lightning's Trainer arguments): a script's remedy sets the key its own config has.
SCRIPT_NAMES = {
    "lr": ("lr", "learning_rate"),
    "min_lr": ("min_lr",),
    "batch_size": ("batch_size", "per_device_train_batch_size", "train_batch_size"),
    "grad_accum_steps": ("grad_accum_steps", "gradient_accumulation_steps", "accumulate_grad_batches"),
    "grad_clip": ("grad_clip", "max_grad_norm", "gradient_clip_val"),
    "weight_decay": ("weight_decay",),
    "warmup_steps": ("warmup_steps",),
    "max_steps": ("max_steps",),
    "dropout": ("dropout",),
}

# AdamW's decoupled weight decay removes lr x weight_decay of every decayed weight per step.
# Common practice is about 1e-4 (nanoGPT: lr 1e-3 x weight_decay 0.1); ten times that halves an
# unused weight in ~700 steps, and the failure presets that collapse remove 3% and 10% per step.
COMMON_DECAY_PER_STEP = 1e-4
HEAVY_DECAY_PER_STEP = 1e-3
# A decayed-weight or embedding norm below this share of its peak: the weights have collapsed, and
# a fork would carry them over; the remedy then starts a new run.
COLLAPSED_NORM_SHARE = 0.5
# Fewer samples per optimizer step than this: a noisy gradient is a likely part of a spike.
SMALL_BATCH = 16


def config(changes: dict, why: str, start: str = FORK) -> dict:
    return {"kind": CONFIG, "start": start, "set": changes, "why": why}


def code_change(why: str) -> dict:
    return {"kind": CODE, "set": {}, "why": why}


def no_action(why: str) -> dict:
    return {"kind": NONE, "set": {}, "why": why}


def kind_of(remedy: dict) -> str:
    """A remedy's kind; one written before kinds existed (a set and a why) is a config fork."""
    kind = remedy.get("kind")
    return kind if kind in KINDS else (CONFIG if remedy.get("set") else NONE)


def script_knobs(raw: dict) -> dict[str, tuple[str, float]]:
    """Our knob -> (the key in a script's own config, its value), for each knob that config states
    as a number (a bool is not one)."""
    known = {}
    for knob, names in SCRIPT_NAMES.items():
        for name in names:
            value = raw.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                known[knob] = (name, value)
                break
    return known


def base_config(ctx) -> Config:
    """The run's config: ours, or for a run our trainer did not write, our defaults with whatever
    its own config states under a known name (so a remedy quotes the script's values, not ours)."""
    if ctx.cfg is not None:
        return ctx.cfg
    values = {knob: value for knob, (_, value) in script_knobs(getattr(ctx, "raw", None) or {}).items()}
    if "lr" in values and "min_lr" not in values:
        values["min_lr"] = values["lr"] / 10  # our default's ratio: keeps the pair valid
    # values our schema refuses together (a warm-up longer than the run, say): the optimizer's alone
    for attempt in (values, {k: v for k, v in values.items() if k not in ("warmup_steps", "max_steps")}):
        try:
            return from_dict(attempt)
        except Exception:
            continue
    return Config()


def in_script_terms(remedy: dict, known: dict[str, tuple[str, float]]) -> dict | None:
    """A remedy for a run our trainer did not write: a config change is made in its script, under
    the script's own key names (known: script_knobs of its config); one that sets a knob the
    script's config does not state is dropped (its numbers would be our defaults, not the run's,
    and half a remedy is another remedy). Other kinds as they are."""
    if kind_of(remedy) != CONFIG:
        return remedy
    if not remedy.get("set") or not set(remedy["set"]) <= set(known):
        return None
    sets = {known[k][0]: v for k, v in remedy["set"].items()}
    why = remedy.get("why", "")
    for knob, (name, _) in known.items():
        if name != knob:  # "grad_clip 1 -> 0.5" reads "max_grad_norm 1 -> 0.5" for a Hugging Face run
            why = re.sub(rf"\b{knob}\b", name, why)
    return {**remedy, "start": SCRIPT, "set": sets, "why": why}


def run_evidence(ctx) -> RunEvidence:
    return getattr(ctx, "evidence", None) or RunEvidence()


def _num(value: float) -> float:
    """Round to 3 significant digits so remedies read like a human wrote them (0.003, not 0.0030000001)."""
    return float(f"{value:.3g}")


def _pct(share: float) -> str:
    return f"{share * 100:.3g}%"


def lr_to(cfg: Config, lr: float) -> dict:
    """lr, keeping min_lr <= lr valid."""
    out = {"lr": _num(lr)}
    if cfg.min_lr > out["lr"]:
        out["min_lr"] = _num(out["lr"] / 10)
    return out


# --- weight decay: the shrink that collapses weights ------------------------------------------------


def decay_per_step(ctx) -> float:
    """The share of each decayed weight removed per step: as logged by the probes, else lr x weight_decay."""
    ev, cfg = run_evidence(ctx), base_config(ctx)
    return ev.decay if ev.decay is not None else cfg.lr * cfg.weight_decay


def heavy_decay(ctx) -> bool:
    return decay_per_step(ctx) > HEAVY_DECAY_PER_STEP


def _shrink(ctx, prefer: str) -> tuple[str, NormTrack | None]:
    ev = run_evidence(ctx)
    for key in (prefer, rf.EMBEDDING_NORM, rf.DECAYED_NORM):
        track = ev.norms.get(key)
        if track is not None and track.fall() is not None:
            return ("embedding" if key == rf.EMBEDDING_NORM else "decayed-weight"), track
    return "", None


def decay_story(ctx, prefer: str = rf.DECAYED_NORM) -> tuple[str, bool]:
    """(the decay mechanism in this run's numbers, whether the weights have collapsed)."""
    cfg = base_config(ctx)
    share = decay_per_step(ctx)
    lr = run_evidence(ctx).lr or cfg.lr
    text = (
        f"weight_decay {cfg.weight_decay:g} x lr {lr:.3g} removes {_pct(share)} of each decayed weight per step "
        f"(common practice: about {_pct(COMMON_DECAY_PER_STEP)})"
    )
    label, track = _shrink(ctx, prefer)
    collapsed = False
    if track is not None:
        s0, v0, s1, v1 = track.fall()
        text += f"; the {label} norm fell from {v0:.3g} (step {s0}) to {v1:.3g} (step {s1})"
        collapsed = v1 < COLLAPSED_NORM_SHARE * v0
    return text, collapsed


def less_decay(ctx, prefer: str = rf.DECAYED_NORM) -> list[dict]:
    """Weight decay down to the common per-step share, as a new run when the weights have collapsed
    (and then also as a fork, the cheaper try, whose trial shows whether they recover)."""
    cfg = base_config(ctx)
    story, collapsed = decay_story(ctx, prefer)
    peak_lr = max(cfg.lr, run_evidence(ctx).lr or 0.0)
    wd = _num(min(cfg.weight_decay / 10, COMMON_DECAY_PER_STEP / peak_lr)) if peak_lr > 0 else 0.0
    after = f"weight_decay {wd:g} removes {_pct(wd * peak_lr)} per step"
    if not collapsed:
        return [config({"weight_decay": wd}, f"{story}: decay, not the gradient, sets the weights. {after}", FORK)]
    fresh = config(
        {"weight_decay": wd},
        f"{story}: decay, not the gradient, sets the weights. {after}. Start a new run: a fork would begin from "
        "the collapsed weights, which may stay collapsed",
        NEW,
    )
    forked = config(
        {"weight_decay": wd},
        f"the same change as a fork of the best checkpoint: cheaper, but it starts from weights decay has already "
        f"shrunk ({story.split('; ')[-1]}), so it may stay collapsed",
        FORK,
    )
    return [fresh, forked]


def lower_lr_for_decay(ctx, start: str) -> dict:
    cfg = base_config(ctx)
    lr = cfg.lr / 10
    return config(
        lr_to(cfg, lr),
        f"lr {cfg.lr:g} -> {lr:.3g}: decoupled decay scales with the LR, so this also cuts it to "
        f"{_pct(lr * cfg.weight_decay)} per step, and every update is 10x smaller",
        start,
    )


def decay_first(ctx, prefer: str = rf.DECAYED_NORM) -> list[dict]:
    """The remedies when decay is heavy: less decay, then a smaller LR; never a larger LR, which
    would shrink the weights faster still."""
    first = less_decay(ctx, prefer)
    return [first[0], lower_lr_for_decay(ctx, first[0]["start"]), *first[1:]]


# --- LR, clipping and batch: the size and noise of a step -----------------------------------------


def raise_lr(ctx, why: str) -> dict:
    cfg = base_config(ctx)
    out = lr_to(cfg, cfg.lr * 3)
    if cfg.warmup_steps > 0:
        out["warmup_steps"] = max(1, cfg.warmup_steps // 3)
    return config(out, f"lr {cfg.lr:g} x 3 = {out['lr']:g} with a shorter warm-up: {why}")


def less_regularisation(ctx, why: str) -> dict:
    cfg = base_config(ctx)
    wd = _num(cfg.weight_decay / 10) if cfg.weight_decay > 0 else 0.0
    out = {"weight_decay": wd, "grad_clip": _num(cfg.grad_clip * 5) if cfg.grad_clip > 0 else 5.0}
    if cfg.dropout > 0:
        out["dropout"] = 0.0
    return config(out, f"{decay_story(ctx)[0]}; {why}")


def _lr_now(ctx) -> float:
    return run_evidence(ctx).lr or base_config(ctx).lr


def lower_lr(ctx, step: int) -> dict:
    """Back to the LR the run learnt at when a jump came before step, else half the config's lr.

    Half of the config's lr, not of the logged one: the config's lr is what a schedule (warm-up,
    cosine, linear decay) scales, so halving it halves the LR at every step, the spike's included;
    half the logged LR set as the config's lr cut a run 77% into its cosine by 2.6x
    (examples/plain_loop.py --lr 0.5: lr 0.385 at step 19114 -> lr=0.192), and one in its warm-up by
    far more."""
    cfg, jump = base_config(ctx), run_evidence(ctx).jump_before(step)
    if jump is not None:
        at, before, after = jump
        return config(
            lr_to(cfg, before),
            f"lr rose {after / before:.3g}x from {before:g} to {after:g} by step {at}"
            + (f", {step - at} steps before this" if step > at else "")
            + ": every update grew with it and threw the weights off what they had learnt. Fork the best "
            f"checkpoint with the LR the run learnt at, {before:g}",
        )
    lr, out = _lr_now(ctx), lr_to(cfg, cfg.lr / 2)
    scheduled = f" (lr {cfg.lr:g} -> {out['lr']:g} halves it at every step)" if not math.isclose(lr, cfg.lr) else ""
    return config(
        out,
        f"lr {lr:g} at step {step}{scheduled}: half the step size keeps a bad gradient from throwing the weights as far",
    )


def tighter_clipping(ctx) -> dict:
    cfg = base_config(ctx)
    if cfg.grad_clip <= 0:
        return config(
            {"grad_clip": 1.0},
            "grad_clip is 0 (off): nothing bounds the update a bad gradient makes; 1.0 caps its norm",
        )
    clip = _num(cfg.grad_clip * 0.5)
    return config(
        {"grad_clip": clip}, f"grad_clip {cfg.grad_clip:g} -> {clip:g} bounds the update a bad gradient makes"
    )


def larger_batch(ctx) -> dict:
    cfg, ev = base_config(ctx), run_evidence(ctx)
    batch = int(ev.effective_batch or cfg.batch_size * cfg.grad_accum_steps)
    return config(
        {"batch_size": cfg.batch_size * 4},
        f"each step averages the gradient over {batch} samples (batch_size {cfg.batch_size} x grad_accum_steps "
        f"{cfg.grad_accum_steps}); 4x as many halve its noise",
    )


def slower_start(ctx, alert: dict) -> dict | None:
    """A loss that blew up within its first rows at the full LR, with no warm-up: a tenth of the LR,
    reached over a warm-up (5% of the run). None when the run had a warm-up (the blow-up is then
    not the start's) or the alert is not an early divergence."""
    cfg, rows = base_config(ctx), alert.get("rows_logged")
    if cfg.warmup_steps > 0 or not isinstance(rows, int) or "times_start" not in alert:
        return None
    out = lr_to(cfg, cfg.lr / 10)
    out["warmup_steps"] = max(1, round(0.05 * cfg.max_steps))
    return config(
        out,
        f"lr {cfg.lr:g} from the first step, with no warm-up, and train/loss at {alert['times_start']:g}x its "
        f"first value within {rows} logged rows: a tenth of it, {out['lr']:g}, reached over "
        f"{out['warmup_steps']} warm-up steps",
    )


def unstable_step(ctx, step: int, first: str) -> list[dict]:
    """An update too large for the run: the LR back down first when it jumped, else `first`
    ("batch", "clip" or "lr") leads; the others follow."""
    cfg, ev = base_config(ctx), run_evidence(ctx)
    lr, clip, batch = lower_lr(ctx, step), tighter_clipping(ctx), larger_batch(ctx)
    small = (ev.effective_batch or cfg.batch_size * cfg.grad_accum_steps) < SMALL_BATCH
    if ev.jump_before(step) is not None or first == "lr":
        order = [lr, clip, batch]
    elif first == "batch" and small:
        order = [batch, lr, clip]
    else:
        order = [clip, lr, batch]
    return order


# --- the rest ---------------------------------------------------------------------------------------


def early_stopping(ctx, why: str, patience: int = 3) -> dict:
    return config({"early_stopping.patience": patience}, why)


def more_regularisation(ctx, why: str) -> dict:
    cfg = base_config(ctx)
    out = {"dropout": 0.2 if cfg.dropout < 0.2 else min(0.5, _num(cfg.dropout + 0.1))}
    out["weight_decay"] = _num(max(cfg.weight_decay * 2, 0.1))
    if out["weight_decay"] * cfg.lr > HEAVY_DECAY_PER_STEP:  # never into the decay that collapses weights
        del out["weight_decay"]
    return config(out, why)


def smaller_micro_batch(ctx, why: str) -> dict | None:
    cfg = base_config(ctx)
    if cfg.batch_size < 2:
        return None
    half, twice = cfg.batch_size // 2, cfg.grad_accum_steps * 2
    steps = f"batch_size {cfg.batch_size} x grad_accum_steps {cfg.grad_accum_steps} -> {half} x {twice}"
    return config({"batch_size": half, "grad_accum_steps": twice}, f"{steps}: {why}")
