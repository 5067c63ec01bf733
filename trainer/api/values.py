"""What run.log accepts, and how the values become numbers later, off the training thread.

On the training thread, `held(key, value)` only checks and detaches: a 0-d (or one-element)
tensor on a device stays a tensor, so logging never waits for the GPU (a CPU tensor, with nothing to
wait for, is read at once). On the background thread,
`numbers_in_place(rows)` turns every tensor waiting in one flush into Python numbers with one
`.tolist()` per device and dtype (one sync per flush, not one per value).
"""

from __future__ import annotations

from collections import defaultdict

import torch

# Written as they are; run.log reads a CPU tensor itself, and anything else goes through held()
# (checked by exact type: fast).
PLAIN = frozenset((float, int, bool, type(None)))


def held(key: str, value):
    """The value to keep until the flush: a detached tensor, or a Python number. Raises TypeError
    for anything that is not one number, naming the key."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:  # metadata only: no sync
            raise TypeError(
                f"metric {key!r} is a tensor of shape {tuple(value.shape)}; log one number per key "
                "(e.g. loss, or loss.mean()) and pass arrays to run.sample(pred=..., target=...)"
            )
        if value.is_cpu:  # nothing to wait for: read it now (~0.3 us), cheaper than keeping it
            return value.item()
        # detach() only cuts the graph (so it is freed now, not at the flush); ~0.5 us, so skip it
        # when there is no graph
        return value.detach() if value.requires_grad else value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # IntEnum and other int subclasses as plain ints
    if not isinstance(value, (str, bytes)):
        try:
            return float(value)  # numpy scalars and other number types
        except (TypeError, ValueError):
            pass
    raise TypeError(
        f"metric {key!r} has value {value!r} of type {type(value).__name__}, which is not a number; "
        "log one number per key and put text in run.sample(text=...)"
    )


def to_numbers(tensors: list[torch.Tensor]) -> list:
    """The Python number of each one-element tensor, in order; one .tolist() per (device, dtype).

    A CPU tensor is read with .item(): there is no device to wait for, and stacking costs more
    (reshape, stack and the (device, dtype) key are ~1-2 us each per tensor, against ~0.3 us)."""
    out: list = [None] * len(tensors)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        if t.is_cpu:
            out[i] = t.item()
        else:
            groups[(t.device, t.dtype)].append(i)
    for indices in groups.values():
        values = torch.stack([tensors[i] if tensors[i].ndim == 0 else tensors[i].reshape(()) for i in indices])
        for i, v in zip(indices, values.tolist()):
            out[i] = v
    return out


def numbers_in_place(rows: list[tuple[dict, list[str]]]) -> None:
    """Replace each row's tensors (at its keys) by their numbers. A CPU tensor is read where it is
    (~0.5 us a value, in one pass); the others go through to_numbers together: one sync per device."""
    elsewhere = []
    for row, keys in rows:
        for key in keys:
            value = row[key]
            if value.is_cpu:
                row[key] = value.item()
            else:
                elsewhere.append((row, key))
    if elsewhere:
        for (row, key), number in zip(elsewhere, to_numbers([row[key] for row, key in elsewhere])):
            row[key] = number
