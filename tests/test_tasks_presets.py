"""The failure presets in configs/ reproduce their incident for real, and the healthy presets do
not: each is trained briefly through engine.train and judged on what it logged
(metrics.jsonl, samples.jsonl, grads.jsonl). Slow: about 2-3 minutes on 2 CPU cores in all.

    python -m pytest -m slow tests/test_tasks_presets.py
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from trainer.config import resolve
from trainer.engine import train

pytestmark = pytest.mark.slow
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_preset(runs_dir, name: str, *sets: str) -> Path:
    cfg = resolve(CONFIGS / f"{name}.yaml", list(sets), environ={})
    assert train(cfg, runs_dir, name) == "finished"
    return Path(runs_dir) / name


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_json(run_dir / "metrics.jsonl", lines=True)


def series(run_dir: Path, key: str) -> pd.Series:
    df = metrics(run_dir)
    return df.dropna(subset=[key]).set_index("step")[key]


def records(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def val_over_train(run_dir: Path, last: int = 5) -> float:
    """Final val/loss over the mean train/loss of the last `last` log rows."""
    return float(series(run_dir, "val/loss").iloc[-1] / series(run_dir, "train/loss").iloc[-last:].mean())


# --- text_diffusion (report 000) ----------------------------------------------------------------
def test_text_diffusion_collapse_preset_samples_mostly_punctuation(runs_dir):
    run = run_preset(runs_dir, "text_diffusion_collapse")
    final = records(run, "samples.jsonl")[-1]
    assert final["punctuation_share"] > 0.6, final["text"][:80]
    assert final["distinct_chars"] <= 5
    assert series(run, "out/target_std").iloc[-1] < 0.4  # the embedding table has shrunk


def test_text_diffusion_healthy_preset_samples_text(runs_dir):
    run = run_preset(runs_dir, "text_diffusion", "max_steps=300", "eval_interval=150", "sample_interval=150")
    final = records(run, "samples.jsonl")[-1]
    assert final["punctuation_share"] < 0.2, final["text"][:80]
    assert final["distinct_chars"] >= 10
    loss = series(run, "train/loss")
    assert loss.iloc[-3:].mean() < 0.5 * loss.iloc[:3].mean()


# --- regression (report 001) --------------------------------------------------------------------
def test_regression_variance_collapse_preset_collapses_predictions(runs_dir):
    run = run_preset(runs_dir, "regression_variance_collapse", "max_steps=100")
    ratio = series(run, "out/variance_ratio")
    assert ratio.iloc[-3:].max() < 0.1
    assert series(run, "out/target_std").iloc[-1] > 0.8  # the targets did not collapse, the model did


def test_regression_val_below_train_preset_scores_val_under_half_of_train(runs_dir):
    run = run_preset(runs_dir, "regression_val_below_train", "max_steps=150")
    assert val_over_train(run) < 0.5


def test_regression_dead_branch_preset_logs_exactly_zero_gradients(runs_dir):
    run = run_preset(runs_dir, "regression_dead_branch", "max_steps=60")
    probes = records(run, "grads.jsonl")
    assert probes
    for probe in probes:
        dead = {k: v for k, v in probe["norms"].items() if k.startswith("celestial_")}
        alive = {k: v for k, v in probe["norms"].items() if not k.startswith("celestial_")}
        assert len(dead) == 4 and set(dead.values()) == {0.0}
        assert min(alive.values()) > 0.0


def test_regression_healthy_preset_shows_none_of_the_failures(runs_dir):
    run = run_preset(runs_dir, "regression", "max_steps=300", "eval_interval=150", "probe_interval=100")
    assert series(run, "out/variance_ratio").iloc[-5:].min() > 0.1
    assert 0.7 < val_over_train(run) < 1.5
    for probe in records(run, "grads.jsonl"):
        assert min(probe["norms"].values()) > 0.0
    loss = series(run, "train/loss")
    assert loss.iloc[-5:].mean() < 0.8 * loss.iloc[:3].mean()


# --- discrete_diffusion (report 002) ------------------------------------------------------------
def test_discrete_diffusion_curriculum_preset_loss_rises_with_difficulty_not_divergence(runs_dir):
    run = run_preset(runs_dir, "discrete_diffusion_curriculum")
    loss, difficulty = series(run, "train/loss"), series(run, "curriculum/difficulty")
    tenth = max(1, len(loss) // 10)
    assert loss.iloc[-tenth:].mean() > 2 * loss.iloc[:tenth].mean()
    assert difficulty.is_monotonic_increasing and difficulty.iloc[0] < 0.3 and difficulty.iloc[-1] == 1.0
    assert (difficulty < 1.0).mean() > 0.9  # the ramp spans the run: it never trains at a stable difficulty
    assert loss.corr(difficulty) > 0.8
    val = series(run, "val/loss")  # scored at full difficulty: falls, so this is no divergence
    assert val.iloc[-1] < val.iloc[0]


def test_discrete_diffusion_healthy_preset_loss_stops_rising_after_the_ramp(runs_dir):
    run = run_preset(runs_dir, "discrete_diffusion", "max_steps=400", "sample_interval=400")
    loss = series(run, "train/loss")
    quarter = len(loss) // 4
    assert loss.iloc[-quarter:].mean() <= 1.02 * loss.iloc[quarter : 2 * quarter].mean()
    assert series(run, "curriculum/difficulty").iloc[-1] == 1.0
    assert "text" in records(run, "samples.jsonl")[-1]


# --- char_lm (report 003) -----------------------------------------------------------------------
def spikes(run_dir: Path) -> pd.DataFrame:
    """Log rows where the loss jumped by > 0.15 and grad/norm was > 10x the run's median."""
    df = metrics(run_dir).dropna(subset=["train/loss"]).reset_index(drop=True)
    jump = df["train/loss"].diff()
    return df[(jump > 0.15) & (df["grad/norm"] > 10 * df["grad/norm"].median())]


def test_char_spike_preset_shows_a_loss_spike_with_exploding_gradients(runs_dir):
    run = run_preset(runs_dir, "shakespeare_char_spike")
    assert len(spikes(run)) >= 1
    assert series(run, "train/loss").iloc[-5:].mean() > 2.8  # never recovers to learn


def test_char_healthy_preset_has_no_spike(runs_dir):
    run = run_preset(
        runs_dir, "shakespeare_char", "max_steps=300", "log_interval=5", "eval_interval=300", "sample_interval=300"
    )
    assert spikes(run).empty
    assert series(run, "train/loss").iloc[-5:].mean() < 2.6
