"""Statistics of a generated sample that make a collapsing model visible at a glance.

A model that collapses to the mean emits "eeee   " or the same word forever: its distinct
characters and entropy fall while the punctuation share drifts. Numeric samples report how wide
the prediction is compared with the target (the variance ratio of one window).

    text_stats("To be, or not to be") -> {"length": 19, "distinct_chars": 10, ...}
"""

from __future__ import annotations

import math
import string
from collections import Counter

import numpy as np
import pandas as pd

from trainer.doctor.outputs import VarianceCollapse

PUNCTUATION = frozenset(string.punctuation)


def entropy_bits(symbols) -> float:
    """Shannon entropy of the symbol distribution, in bits per symbol (0 for empty input)."""
    counts = Counter(symbols)
    total = sum(counts.values())
    if not total:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def longest_repeat(text: str) -> int:
    """Length of the longest run of one repeated character ("aaab" -> 3)."""
    best = run = 0
    previous = None
    for ch in text:
        run = run + 1 if ch == previous else 1
        previous = ch
        best = max(best, run)
    return best


def text_stats(text: str) -> dict[str, float]:
    """Length, distinct characters and words, punctuation and whitespace share, entropy."""
    text = text or ""
    n = len(text)
    words = text.split()
    return {
        "length": n,
        "distinct_chars": len(set(text)),
        "distinct_words": len(set(words)),
        "words": len(words),
        "punctuation_share": sum(ch in PUNCTUATION for ch in text) / n if n else 0.0,
        "whitespace_share": sum(ch.isspace() for ch in text) / n if n else 0.0,
        "entropy_bits": entropy_bits(text),
        "longest_repeat": longest_repeat(text),
    }


def numeric_stats(pred, target) -> dict[str, float]:
    """Spread of a numeric prediction against its target: std of each and their ratio."""
    p = np.asarray(pred if pred is not None else [], dtype=float)
    t = np.asarray(target if target is not None else [], dtype=float)
    pred_std = float(np.std(p)) if p.size else float("nan")
    target_std = float(np.std(t)) if t.size else float("nan")
    out = {"points": int(p.size), "pred_std": pred_std, "target_std": target_std}
    out["variance_ratio"] = pred_std / target_std if target_std and math.isfinite(target_std) else float("nan")
    if p.size and p.size == t.size:
        out["mae"] = float(np.mean(np.abs(p - t)))
    return out


def sample_stats(record: dict) -> dict[str, float]:
    """Stats for one samples.jsonl row, text or numeric."""
    if record.get("text") is not None:
        return text_stats(str(record["text"]))
    return numeric_stats(record.get("pred"), record.get("target"))


def stats_table(samples) -> pd.DataFrame:
    """One row of statistics per samples.jsonl row (step first), oldest first."""
    if samples is None or len(samples) == 0:
        return pd.DataFrame()
    rows = []
    for record in samples.to_dict("records"):
        record = {k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        rows.append({"step": record.get("step"), **sample_stats(record)})
    return pd.DataFrame(rows)


def table_caption(table: pd.DataFrame) -> str:
    """What to read in stats_table's columns: text and numeric samples collapse differently."""
    kinds = []
    if "entropy_bits" in table:
        kinds.append("a collapsing generator loses distinct characters and entropy")
    if "variance_ratio" in table:
        below = VarianceCollapse.max_std_ratio  # the doctor's own threshold
        kinds.append(
            f"a prediction collapsing to a constant has pred_std far below target_std (variance_ratio under {below:g})"
        )
    return "Statistics per sample" + (f" ({'; '.join(kinds)})" if kinds else "")
