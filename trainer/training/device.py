"""Which device trains, and which mixed precision it allows.

auto picks cuda, then mps, then cpu. A device that is not here is refused with the list of those
that are; AMP (bf16/fp16) is CUDA only.
"""

from __future__ import annotations

import contextlib

import torch

from trainer.errors import ConfigError, DeviceError


def available_devices() -> list[str]:
    """Device names usable here, best first: e.g. ['cuda', 'cuda:0', 'cuda:1', 'cpu']."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
        out.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def pick_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch.device for config value `name`; DeviceError naming the available ones if absent.

    Under DDP on CUDA, each process takes the GPU of its local rank.
    """
    available = available_devices()
    if name == "auto":
        name = available[0]
    if name not in available:
        raise DeviceError(
            f"device {name!r} is not available here; available: {', '.join(available)} "
            "(use --set device=auto to pick the best one)"
        )
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    return torch.device(name)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for config `amp`, or None for full precision; ConfigError off CUDA."""
    if amp == "off":
        return None
    if device.type != "cuda":
        raise ConfigError(f"amp: {amp!r} needs a CUDA device, but this run is on {device.type}; use amp=off")
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp: 'bf16' is not supported by this GPU; use amp=fp16 or amp=off")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward-pass context: autocast when a dtype is set, else a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_mb(device: torch.device) -> dict[str, float]:
    """Accelerator memory series for the metrics row (empty on CPU)."""
    mb = 2.0**20
    if device.type == "cuda":
        return {
            "sys/cuda_mem_mb": torch.cuda.memory_allocated(device) / mb,
            "sys/cuda_mem_peak_mb": torch.cuda.max_memory_allocated(device) / mb,
        }
    if device.type == "mps" and hasattr(torch, "mps") and hasattr(torch.mps, "current_allocated_memory"):
        # MPS has no peak counter in torch; report what is allocated now.
        return {"sys/cuda_mem_mb": torch.mps.current_allocated_memory() / mb}
    return {}
