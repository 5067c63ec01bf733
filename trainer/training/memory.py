"""Refuse a model that cannot fit before allocating it: the model is built once on PyTorch's "meta"
device (shapes only, no storage), its parameters counted, and what training them needs compared
with the memory free on the run's device. Without this, `model.n_embd=65536` meant minutes of
swapping and then the kernel's OOM killer.

    check_fits(task, cfg, device)   # ConfigError naming the sizes and what to lower
"""

from __future__ import annotations

import psutil
import torch

from trainer.config import Config
from trainer.errors import ConfigError

# fp32 weights, their gradients and AdamW's two moments (an EMA copy adds one more); activations come
# on top and depend on the batch, so this is a floor, not an estimate of the peak.
BYTES_PER_PARAM = 16
EMA_BYTES_PER_PARAM = 4


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available  # CPU and MPS (unified memory) share the host's


def check_fits(task, cfg: Config, device: torch.device) -> int:
    """The model's parameter count; ConfigError when training it cannot fit in the device's free memory."""
    with torch.device("meta"):
        model = task.build_model()
    params = sum(p.numel() for p in model.parameters())
    needed = params * (BYTES_PER_PARAM + (EMA_BYTES_PER_PARAM if cfg.ema > 0 else 0))
    free = free_bytes(device)
    if needed > free:
        raise ConfigError(
            f"model: {params / 1e6:,.0f}M parameters need at least {needed / 2**30:,.1f} GiB to train (weights, "
            f"gradients and AdamW's moments in fp32) but {device.type} has {free / 2**30:,.1f} GiB free; "
            "lower model.n_embd or model.n_layer"
        )
    return params
