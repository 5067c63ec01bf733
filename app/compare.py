"""Comparing runs: which config keys differ, which series they share, and CSV export."""

from __future__ import annotations

import pandas as pd

from trainer import config as C


def config_differences(configs: dict[str, dict | None]) -> pd.DataFrame:
    """Rows = dotted config keys whose values differ between runs; columns = run ids.

    A run without a readable config shows "—" in every row.
    """
    flat = {run: C.flatten(cfg) if isinstance(cfg, dict) else {} for run, cfg in configs.items()}
    keys = sorted(set().union(*[f.keys() for f in flat.values()])) if flat else []
    rows = {}
    for key in keys:
        values = [flat[run].get(key, "—") for run in flat]
        if len({repr(v) for v in values}) > 1:
            rows[key] = [str(v) for v in values]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(flat)).rename_axis("key")


def numeric_series(frames: dict[str, pd.DataFrame]) -> list[str]:
    """Series names (besides step and time) found in any of the runs, in first-seen order."""
    seen: dict[str, None] = {}
    for frame in frames.values():
        for column in frame.columns:
            if column not in ("step", "time"):
                seen.setdefault(column, None)
    return list(seen)


def metrics_csv(frame: pd.DataFrame) -> bytes:
    """The run's metrics as CSV bytes, step and time first."""
    first = [c for c in ("step", "time") if c in frame.columns]
    ordered = frame[first + [c for c in frame.columns if c not in first]]
    return ordered.to_csv(index=False).encode("utf-8")
