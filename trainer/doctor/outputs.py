"""Detectors on what the model outputs: variance_collapse (numeric predictions) and token_collapse
(generated text).

variance_collapse reads out/pred_std and out/target_std (or out/variance_ratio) from metrics rows
and pred/target windows from samples.jsonl; token_collapse reads samples.jsonl text.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, median
from trainer.rundir import run_format as rf

# Character entropy (nats) of English prose per sample length: 200-character windows of
# Shakespeare measure about 2.9; short windows hold fewer distinct characters.
REFERENCE_ENTROPY = 2.9


def _std_ratio_from_row(row) -> float | None:
    pred, target = row.get(rf.PRED_STD), row.get(rf.TARGET_STD)
    if finite(pred) and finite(target) and target > 0:
        return pred / target
    ratio = row.get(rf.VARIANCE_RATIO)
    if finite(ratio) and ratio >= 0:
        return ratio  # out/variance_ratio is pred_std / target_std (docs/run-format.md)
    return None


class VarianceCollapse(Detector):
    """Predictions far less spread than the targets (report 001: pred_std 0.03 vs target_std 0.86, 1:29).

    statistic: pred_std / target_std, median of the last `window` values
    fires when the median < max_std_ratio for confirm_rows rows and is not recovering (it is below
    recovery_factor x its value `window` rows earlier), after warm-up and min_rows values.
    """

    code = "variance_collapse"
    title = "Prediction variance collapsed"
    cause = (
        "The model found the lazy solution of predicting the mean; LR too low or regularisation too strong, or an "
        "output layer that squashes its range (report 001)."
    )
    kind = "metrics+samples"
    severity = "critical"
    max_std_ratio = 0.1
    window = 5
    min_rows = 10
    confirm_rows = 5
    recovery_factor = 2.0
    rearm_rows = 5
    thresholds = ("max_std_ratio", "window", "min_rows", "confirm_rows", "recovery_factor")

    def healthy_reason(self) -> str:
        return f"prediction spread stayed above 1/{1 / self.max_std_ratio:.0f} of the target spread"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ratios: deque = deque(maxlen=self.window)
        self.medians: deque = deque(maxlen=self.window + 1)
        self.last = (None, None)

    def observe(self, step, record):
        ratio = _std_ratio_from_row(record)
        if ratio is None and "pred" in record and "target" in record:
            ratio = self._ratio_from_sample(record)
        if ratio is None:
            return None
        self.observed += 1
        self.last = (record.get(rf.PRED_STD), record.get(rf.TARGET_STD))
        self.ratios.append(ratio)
        now = median(self.ratios)
        earlier = self.medians[0] if len(self.medians) == self.medians.maxlen else None
        self.medians.append(now)
        if self.observed < self.min_rows or self.ctx.in_warmup(step):
            return None
        recovering = earlier is not None and now > self.recovery_factor * earlier
        if not self.confirmed(now < self.max_std_ratio and not recovering, self.confirm_rows):
            return None
        pred, target = self.last
        one_to = f"1:{1 / now:.0f}" if now > 0 else "1:inf"
        numbers = (
            f"pred_std {fmt(pred)} vs target_std {fmt(target)}"
            if finite(pred) and finite(target)
            else (f"pred/target std ratio {fmt(now)}")
        )
        return self.fire(
            step,
            f"predictions have collapsed towards a constant: {numbers}, ratio {one_to} at step {step}",
            evidence := {"std_ratio": now, "pred_std": pred, "target_std": target, "ratio_text": one_to},
            R.for_alert(self.code, self.ctx, evidence, step),
        )

    @staticmethod
    def _ratio_from_sample(record) -> float | None:
        pred, target = record.get("pred"), record.get("target")
        if not isinstance(pred, list) or not isinstance(target, list) or min(len(pred), len(target)) < 3:
            return None
        try:
            t = statistics.pstdev(target)
            return statistics.pstdev(pred) / t if t > 0 else None
        except (TypeError, statistics.StatisticsError):
            return None


def text_stats(text: str) -> dict:
    """Character entropy (nats), share of punctuation among non-space characters, share of the two
    commonest characters, and distinct 4-grams / all 4-grams (low when the text loops)."""
    n = len(text)
    counts = Counter(text)
    # max(0, ...): one distinct character sums to -0.0, which would print as "-0.00 nats"
    entropy = max(0.0, -sum(c / n * math.log(c / n) for c in counts.values())) if n else 0.0
    visible = [ch for ch in text if not ch.isspace()]
    punctuation = sum(1 for ch in visible if not ch.isalnum()) / len(visible) if visible else 1.0
    top2 = sum(c for _, c in counts.most_common(2)) / n if n else 1.0
    grams = [text[i : i + 4] for i in range(max(0, n - 3))]
    distinct4 = len(set(grams)) / len(grams) if grams else 1.0
    return {
        "entropy": entropy,
        "punctuation_share": punctuation,
        "top2_share": top2,
        "distinct_4grams": distinct4,
        "length": n,
    }


class TokenCollapse(Detector):
    """Generated samples dominated by a few tokens or by punctuation (report 000: ",:,,:").

    statistic per sample: character entropy, punctuation share, distinct 4-gram ratio
    fires when confirm_samples consecutive samples after warm-up have entropy < entropy_fraction x
    the reference for English text (REFERENCE_ENTROPY), or punctuation share > max_punctuation_share, or (for
    samples of at least 50 characters) distinct 4-grams < min_distinct_4grams.
    """

    code = "token_collapse"
    title = "Generated samples collapsed"
    cause = (
        "The model exploits frequent tokens (punctuation) instead of learning the text; an auxiliary loss "
        "dominating, fixed LR for too long, no early stopping (report 000)."
    )
    kind = "samples"
    severity = "critical"
    entropy_fraction = 0.5
    max_punctuation_share = 0.6
    min_distinct_4grams = 0.15
    confirm_samples = 2
    rearm_rows = 2
    thresholds = ("entropy_fraction", "max_punctuation_share", "min_distinct_4grams", "confirm_samples")

    def healthy_reason(self) -> str:
        return (
            f"samples kept character entropy above {self.entropy_fraction:g} x English text's "
            f"and at most {self.max_punctuation_share:.0%} punctuation"
        )

    def observe(self, step, record):
        text = record.get("text")
        if isinstance(text, list):
            text = "\n".join(str(t) for t in text)
        if not isinstance(text, str) or not text:
            return None
        self.observed += 1
        stats = text_stats(text)
        ref = min(REFERENCE_ENTROPY, 0.8 * math.log(max(2, stats["length"])))
        reasons = []
        if stats["entropy"] < self.entropy_fraction * ref:
            reasons.append(f"character entropy {stats['entropy']:.2f} nats (English text: about {ref:.1f})")
        if stats["punctuation_share"] > self.max_punctuation_share:
            reasons.append(f"{stats['punctuation_share'] * 100:.0f}% punctuation")
        if stats["length"] >= 50 and stats["distinct_4grams"] < self.min_distinct_4grams:
            reasons.append(f"only {stats['distinct_4grams'] * 100:.0f}% distinct 4-grams")
        if not self.confirmed(bool(reasons) and not self.ctx.in_warmup(step), self.confirm_samples):
            return None
        excerpt = text[:40].replace("\n", "\\n")
        return self.fire(
            step,
            f"generated samples have collapsed ({', '.join(reasons)}) for {self.streak} samples, e.g. {excerpt!r}",
            evidence := {**{k: round(v, 3) for k, v in stats.items()}, "excerpt": excerpt, "reference_entropy": ref},
            R.for_alert(self.code, self.ctx, evidence, step),
        )
