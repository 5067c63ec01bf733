"""The programs whose runs the wild suite imitates: what they log, the schedules they run, the
parameter names their models have, and the config.yaml each leaves (the HF callback writes
TrainingArguments, timm its args.yaml, a Lightning import its hparams, a script its own dict).
"""

from __future__ import annotations

PROGRAMS = ("hf_trainer", "timm", "lightning", "script")
# Schedules each program typically runs with (HF's default is linear; timm's cosine; Lightning
# scripts often use OneCycleLR or MultiStepLR; a plain script anything).
SCHEDULES = {
    "hf_trainer": ("linear", "linear", "cosine", "constant_with_warmup", "inverse_sqrt"),
    "timm": ("cosine", "cosine", "step"),
    "lightning": ("one_cycle", "constant", "step", "cosine"),
    "script": ("constant", "cosine", "one_cycle", "step", "inverse_sqrt", "linear"),
}
TASKS = ("text", "text", "regression", "vision")
# Interval between logged train rows: nanoGPT logs every 1-10, HF every 10-500 (default 500),
# Lightning every 50 by default.
LOG_INTERVALS = (1, 5, 10, 10, 20, 25, 50, 100)

PARAMS = {
    "text": (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.1.attn.c_attn.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ),
    "regression": (
        "encoder.input_proj.weight",
        "encoder.layers.0.self_attn.in_proj_weight",
        "encoder.layers.0.linear1.weight",
        "encoder.layers.1.self_attn.in_proj_weight",
        "celestial_key_projection.weight",
        "celestial_query_projection.weight",
        "projection.weight",
        "projection.bias",
    ),
    "vision": (
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer2.0.conv1.weight",
        "layer3.0.conv2.weight",
        "layer4.1.conv2.weight",
        "fc.weight",
        "fc.bias",
    ),
}


def program_config(program, schedule, peak, warmup, total, li, eval_every, sched_info, rng, kind) -> dict | None:
    """config.yaml as the program writes it: kind full, partial (keys lost on the way) or none."""
    if kind == "none":
        return None
    bs = int(rng.choice([8, 16, 32, 64, 128, 256]))
    if program == "hf_trainer":
        config = {
            "output_dir": "out",
            "learning_rate": peak,
            "lr_scheduler_type": schedule,
            "warmup_steps": warmup,
            "max_steps": total,
            "logging_steps": li,
            "eval_steps": eval_every,
            "per_device_train_batch_size": bs,
            "weight_decay": float(rng.choice([0.0, 0.01])),
            "max_grad_norm": 1.0,
            "seed": 42,
            "model": {"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768},
        }
    elif program == "timm":
        config = {"model": "resnet50", "lr": peak, "sched": "multistep" if schedule == "step" else "cosine"}
        config.update({"epochs": int(rng.integers(30, 300)), "warmup_epochs": int(rng.integers(0, 6))})
        config.update({"min_lr": sched_info.get("min_lr", 0.0), "batch_size": bs, "opt": "sgd", "momentum": 0.9})
        if schedule == "step":
            config.update({"decay_milestones": sched_info["milestones"], "decay_rate": sched_info["gamma"]})
    elif program == "lightning":
        config = {"learning_rate": peak, "batch_size": bs, "max_epochs": int(rng.integers(5, 50)), "hidden_dim": 256}
    else:  # a plain script's own dict, as in docs/logging-api.md's example; some use our key names
        config = (
            {"lr": peak, "steps": total, "batch_size": bs} if rng.random() < 0.5 else {"lr": peak, "max_steps": total}
        )
    if kind == "partial":  # keys lost on the way (a hand-written YAML, an old export)
        keep = [k for k in config if rng.random() < 0.5]
        config = {k: config[k] for k in keep}
    return config
