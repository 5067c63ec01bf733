"""The dashboard's pure logic: downsampling, smoothing, sample stats, alerts, forms, comparisons."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from app import charts, compare, grad_map, live_data, run_forms, sample_stats, tiles
from app.markdown import escape
from app.smoothing import ema
from app.tiles import format_number
from trainer.rundir import run_format as rf
from trainer.rundir.metrics_store import MetricsView
from trainer.rundir.summary import MAX_POINTS
from trainer.runs import process


def test_a_chart_of_a_million_rows_keeps_a_single_spike_and_its_dip():
    values = np.ones(1_000_000)
    values[654_321] = 50.0
    values[123_456] = -7.0
    frame = pd.DataFrame({"step": np.arange(1_000_000), "train/loss": values})
    long = charts.series_table({"a": frame}, ["train/loss"]).to_pandas()
    assert len(long) <= MAX_POINTS + 2
    assert set(long.loc[long["value"] != 1.0, "x"]) == {654_321.0, 123_456.0}
    assert long["x"].iloc[-1] == 999_999  # the newest row is always drawn


def test_short_series_are_not_downsampled_and_missing_values_are_skipped():
    frame = pd.DataFrame({"step": [1, 2, 3, 4], "val/loss": [None, 2.0, None, 1.5]})
    long = charts.series_table({"a": frame}, ["val/loss"]).to_pandas()
    assert long["x"].tolist() == [2.0, 4.0]
    assert long["value"].tolist() == [2.0, 1.5]


def test_a_short_series_is_smoothed_row_by_row_and_a_long_one_by_bucket_means():
    values = np.random.default_rng(1).normal(size=3000)
    short = pd.DataFrame({"step": np.arange(MAX_POINTS), "train/loss": values[:MAX_POINTS]})
    long = charts.series_table({"a": short}, ["train/loss"], smoothing=0.9).to_pandas()
    assert np.allclose(long["smoothed"], ema(values[:MAX_POINTS], 0.9))  # exactly TensorBoard's EMA
    frame = pd.DataFrame({"step": np.arange(3000), "train/loss": values})
    drawn = MetricsView.from_frame(frame).buckets("train/loss", max_points=1000)
    means = drawn.buckets.total / drawn.buckets.count
    smoothed = charts.series_table({"a": frame}, ["train/loss"], smoothing=0.9, max_points=1000)["smoothed"]
    assert set(np.round(smoothed.to_numpy(), 12)) == set(np.round(ema(means, 0.9**drawn.size), 12))


def test_ema_matches_tensorboards_debiased_loop():
    values = [3.0, 1.0, float("nan"), 4.0, 1.0, 5.0]
    weight = 0.8
    expected, last, k = [], 0.0, 0
    for v in values:
        if math.isnan(v):
            expected.append(v)
            continue
        last = last * weight + (1 - weight) * v
        k += 1
        expected.append(last / (1 - weight**k))
    got = ema(values, weight)
    assert np.allclose(got, expected, equal_nan=True)
    assert got[0] == 3.0  # debiased: the first point is not pulled towards zero


def test_ema_refuses_a_weight_of_one():
    with pytest.raises(ValueError, match="must be in"):
        ema([1.0], 1.0)


def test_text_stats_show_collapse():
    healthy = sample_stats.text_stats("To be, or not to be: that is the question.")
    collapsed = sample_stats.text_stats("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
    assert healthy["distinct_chars"] > 10 and collapsed["distinct_chars"] == 1
    assert collapsed["entropy_bits"] == 0.0 and healthy["entropy_bits"] > 3
    assert healthy["punctuation_share"] == pytest.approx(3 / 42)
    assert collapsed["longest_repeat"] == 44


def test_numeric_sample_reports_variance_ratio():
    stats = sample_stats.sample_stats({"pred": [0, 0, 1, 1], "target": [0, 0, 2, 2]})
    assert stats["variance_ratio"] == pytest.approx(0.5)
    assert stats["mae"] == pytest.approx(0.5)


def test_the_sample_tables_caption_speaks_of_the_samples_it_shows():
    # a forecaster's pred/target windows were captioned with "distinct characters and entropy"
    numeric = sample_stats.stats_table(pd.DataFrame([{"step": 5, "pred": [0, 1], "target": [0, 2]}]))
    text = sample_stats.stats_table(pd.DataFrame([{"step": 5, "text": "To be"}]))
    assert "variance_ratio" in sample_stats.table_caption(numeric)
    assert "characters" not in sample_stats.table_caption(numeric)
    assert "characters" in sample_stats.table_caption(text) and "variance" not in sample_stats.table_caption(text)


def test_series_table_caps_points_per_series_and_smooths_before_downsampling():
    n = 50_000
    frame = pd.DataFrame({"step": np.arange(n), "train/loss": np.linspace(5, 1, n), "lr": 1e-3})
    long = charts.series_table({"a": frame, "b": frame}, ["train/loss", "lr"], smoothing=0.9).to_pandas()
    assert long.groupby(["run", "series"]).size().max() <= 2002
    assert set(long["line"]) == {"a · train/loss", "a · lr", "b · train/loss", "b · lr"}
    data, spec = charts.line_chart(long, smoothed=True, log_y=True)
    assert data is long and "data" not in spec["layer"][1]  # the table goes beside the spec
    assert spec["layer"][0]["mark"]["opacity"] == 0.25  # raw faint behind the smoothed line


def test_eval_series_are_not_smoothed_by_point_so_the_val_line_shows_the_real_val_loss():
    # One val/loss point per 250 steps: an EMA by point would drag the newest val far behind it.
    frame = pd.DataFrame({"step": np.arange(0, 1000, 10), "train/loss": np.linspace(4, 2, 100)})
    frame["val/loss"] = np.where(frame["step"] % 250 == 0, np.linspace(4.2, 2.2, 100), np.nan)
    long = charts.series_table({"a": frame}, ["train/loss", "val/loss"], smoothing=0.9).to_pandas()
    val, train = long[long["series"] == "val/loss"], long[long["series"] == "train/loss"]
    assert len(val) == 4 and (val["smoothed"] == val["value"]).all()
    assert (train["smoothed"] > train["value"]).iloc[1:].all()  # a falling loss: the EMA lags above it


def test_variance_ratio_chart_shades_the_collapse_band():
    frame = pd.DataFrame({"step": [1, 2], "out/variance_ratio": [0.9, 0.1]})
    long = charts.series_table({"a": frame}, ["out/variance_ratio"]).to_pandas()
    _, spec = charts.line_chart(long, band=(0.0, charts.COLLAPSE_BELOW))
    assert spec["layer"][0]["mark"]["type"] == "rect"


def test_tile_numbers_stay_short():
    assert [format_number(v) for v in (0.0, 0.0008123, -5.424e-06, 2.0994, 24298.7)] == [
        "0",
        "8.12e-04",
        "-5.42e-06",
        "2.099",
        "24,299",
    ]


def test_tile_block_shows_each_logged_series_in_order_with_its_change_coloured_by_meaning():
    latest = {
        rf.LR: (3e-4, -6.8e-15),  # float rounding of a constant LR: no change
        rf.TRAIN_LOSS: (2.5, -0.5),
        rf.STEPS_PER_S: (20.0, -1.5),
        rf.VARIANCE_RATIO: (0.9, None),
    }
    block = tiles.block(latest)
    labels = re.findall(r'<div style="[^"]*opacity:0.7[^"]*">([^<]*)</div>', block)
    assert labels == ["train loss", "learning rate", "variance ratio", "steps/s"]  # SERIES order, logged only
    values = re.findall(r'<div style="[^"]*font-size:1.75rem[^"]*">([^<]*)</div>', block)
    assert values == ["2.5", "3.00e-04", "0.9", "20"]
    deltas = re.findall(r'color:(#[0-9a-f]{6})">([^<]*)</div>', block)
    # a falling loss is good, a flat LR neutral, falling speed bad; no change shown without a previous row
    assert deltas == [(tiles.GOOD, "▼ -0.5"), (tiles.NEUTRAL, "■ 0"), (tiles.BAD, "▼ -1.5")]
    assert tiles.block({}) == ""


def test_tile_block_escapes_its_labels():
    assert "<b>" not in tiles.tile("<b>x</b>", 1.0, None, "normal")
    assert "&lt;b&gt;x&lt;/b&gt;" in tiles.tile("<b>x</b>", 1.0, None, "normal")


def test_tiles_show_newest_value_and_change():
    frame = pd.DataFrame({"train/loss": [3.0, 2.5, None], "lr": [1e-3, 1e-3, 1e-3]})
    latest = live_data.latest_with_change(frame, ["train/loss", "lr", "absent"])
    assert latest["train/loss"] == (2.5, -0.5)
    assert "absent" not in latest


def test_alerts_sorted_by_severity_then_newest_and_remedies_become_sets():
    events = pd.DataFrame(
        [
            {"kind": "start", "step": 0, "message": "started"},
            {"kind": "alert", "step": 10, "severity": "warning", "code": "a", "message": "m1"},
            {
                "kind": "alert",
                "step": 30,
                "severity": "critical",
                "code": "b",
                "message": "m2",
                "remedy": [
                    {"set": {"lr": 0.0003, "grad_clip": 1.0}, "why": "smaller steps"},
                    {"set": {"weight_decay": 0.01}, "why": "less decay", "start": "new"},
                ],
            },
            {"kind": "alert", "step": 20, "severity": "warning", "code": "a", "message": "m3"},
        ]
    )
    alerts = live_data.alerts_from_events(events)
    assert [a["message"] for a in alerts] == ["m2", "m3", "m1"]
    assert [a["code"] for a in live_data.latest_alerts_by_code(alerts)] == ["b", "a"]
    assert live_data.remedy_sets(alerts[0]) == ["lr=0.0003", "grad_clip=1.0"]
    # each config remedy says how it starts, as its button does
    assert live_data.format_remedies(alerts[0]) == [
        "set lr=0.0003, grad_clip=1.0 (fork): smaller steps",
        "set weight_decay=0.01 (new run): less decay",
    ]


def test_markdown_escape_keeps_run_text_literal():
    assert escape("*bold* [x](http://e) :red[y]") == r"\*bold\* \[x\]\(http\:\/\/e\) \:red\[y\]"


def test_changed_fields_become_sets_and_errors_map_to_their_field():
    original = {"lr": "0.001", "max_steps": "2000"}
    sets = run_forms.changed_sets(original, {"lr": "3e-4", "max_steps": "2000"}, "grad_clip=0.5\ndropout=0.1")
    assert sets == ["lr=3e-4", "grad_clip=0.5", "dropout=0.1"]
    fields = ["lr", "model.n_head", "model.n_embd"]
    assert run_forms.error_field("lr: -1.0 must be > 0", fields) == "lr"
    assert run_forms.error_field("model.n_head: 3 does not divide model.n_embd 128", fields) == "model.n_head"
    assert run_forms.error_field("unknown config key foo; allowed keys: ...", fields) == run_forms.GENERAL


def test_invalid_new_run_starts_nothing_and_names_the_field(runs_dir, monkeypatch):
    launched = []
    monkeypatch.setattr(process, "launch", lambda *a, **k: launched.append(a) or 1)
    original = run_forms.preset_field_values(run_forms.DEFAULT_PRESET)
    result = run_forms.start_new_run(run_forms.DEFAULT_PRESET, {**original, "lr": "-1"}, original, runs_dir)
    assert not result.ok and "must be > 0" in result.field_errors["lr"]
    result = run_forms.start_new_run(run_forms.DEFAULT_PRESET, original, original, runs_dir, run_id="../escape")
    assert "invalid run id" in result.field_errors["run_id"]
    assert launched == [] and list(runs_dir.iterdir()) == []


def test_presets_refuse_paths_outside_configs():
    with pytest.raises(Exception, match="presets are"):
        run_forms.preset_path("../pyproject.toml")
    assert run_forms.presets()[0] == run_forms.DEFAULT_PRESET


def test_config_differences_lists_only_keys_that_differ():
    table = compare.config_differences(
        {"a": {"lr": 0.001, "model": {"n_layer": 4}}, "b": {"lr": 0.0003, "model": {"n_layer": 4}}}
    )
    assert table.index.tolist() == ["lr"]
    assert table.loc["lr"].tolist() == ["0.001", "0.0003"]


def test_metrics_csv_puts_step_and_time_first():
    frame = pd.DataFrame({"train/loss": [2.0], "time": [5.0], "step": [1]})
    assert compare.metrics_csv(frame).decode().splitlines() == ["step,time,train/loss", "1,5.0,2.0"]


def test_a_chart_with_gaps_takes_the_same_spikes_as_without():
    values = np.ones(100_000)
    values[5] = 9.0
    values[50_000] = np.nan
    frame = pd.DataFrame({"step": np.arange(100_000), "train/loss": values})
    long = charts.series_table({"a": frame}, ["train/loss"]).to_pandas()
    assert 5.0 in set(long["x"]) and 50_000.0 not in set(long["x"]) and len(long) <= 2002


def test_chart_table_is_arrow_and_gets_a_utc_timestamp_for_the_wall_time_axis():
    import pyarrow as pa

    frame = pd.DataFrame({"step": np.arange(1, 6), "time": 1.7e9 + np.arange(5.0), "train/loss": np.linspace(3, 1, 5)})
    table = charts.series_table({"a": frame}, ["train/loss", "absent"], x=charts.X_TIME)
    assert isinstance(table, pa.Table) and table.column_names == charts.LONG_COLUMNS
    assert table.column("line").to_pylist() == ["train/loss"] * 5
    data, _ = charts.line_chart(table, charts.X_TIME, "loss")
    assert data.schema.field("when").type == pa.timestamp("ns", tz="UTC")
    assert data.column("when").to_pylist()[0].timestamp() == pytest.approx(1.7e9)
    assert charts.series_table({"a": frame}, ["absent"]).num_rows == 0


def test_every_live_chart_spec_passes_vega_lite_schema_validation():
    options = [(x, smoothed, False) for x in (charts.X_STEP, charts.X_TIME) for smoothed in (False, True)]
    for chart in charts.CHARTS:
        for x, smoothed, log_y in [*options, (charts.X_STEP, True, True)]:
            spec = charts._line_spec(x, chart.y_title, log_y, smoothed, chart.band, show_points=True, validate=True)
            assert spec == charts._line_spec(x, chart.y_title, log_y, smoothed, chart.band, show_points=True)


def test_live_chart_specs_draw_on_a_canvas_and_format_tooltips_only_for_hover_targets():
    """What each refresh costs the browser: per point, only the hover targets carry a tooltip, no
    layer an ARIA description, and the chart is a canvas (not an SVG node per point)."""
    for chart in charts.CHARTS:
        for smoothed in (False, True):
            spec = charts.line_spec(charts.X_STEP, chart.y_title, True, smoothed, chart.band)
            assert spec["usermeta"]["embedOptions"]["renderer"] == "canvas"
            assert spec["config"]["aria"] is False
            with_tooltip = [layer["mark"]["type"] for layer in spec["layer"] if "tooltip" in layer["encoding"]]
            assert with_tooltip == ["point"]


def test_changes_text_splits_pairs_but_keeps_a_yaml_value_with_commas_and_spaces_whole():
    assert run_forms.parse_sets_text("lr=3e-4, model.n_layer=6\ngrad_clip=1.0 dropout=0.1,") == [
        "lr=3e-4",
        "model.n_layer=6",
        "grad_clip=1.0",
        "dropout=0.1",
    ]
    assert run_forms.parse_sets_text("lr=[1e-3, 2]\nseed={a: 1, b: 2}\nlr") == [
        "lr=[1e-3, 2]",
        "seed={a: 1, b: 2}",
        "lr",
    ]


def test_a_picked_checkpoint_stays_offered_after_it_is_deleted_in_its_place():
    assert run_forms.checkpoint_choices(["last", "best", "20"], "10") == ["last", "best", "10", "20"]
    assert run_forms.checkpoint_choices(["last", "20"], "best") == ["last", "best", "20"]
    assert run_forms.checkpoint_choices(["last", "20"], "20") == ["last", "20"]
    assert run_forms.checkpoint_choices(["last"], None) == ["last"]


def test_the_gradient_map_keeps_the_models_order_the_newest_probe_and_marks_dead_parameters():
    probes = [
        {
            "step": s,
            "norms/embed.weight": 0.5,
            "norms/head.weight": 0.0 if s >= 500 else 0.2,
            "update_ratios/embed.weight": 1e-3,
        }
        for s in range(10, 1001, 10)
    ]
    grads = pd.DataFrame(probes)
    cells = grad_map.grad_cells(grads, rf.GRAD_NORMS, max_probes=30)
    assert list(dict.fromkeys(cells["param"])) == ["embed.weight", "head.weight"]  # as the probes list them
    steps = sorted(cells["step"].unique())
    assert len(steps) <= 30 and steps[0] == 10 and steps[-1] == 1000  # evenly spaced, the newest kept
    dead = cells[cells["dead"]]
    assert set(dead["param"]) == {"head.weight"} and dead["step"].min() >= 500 and dead["log10"].isna().all()
    assert cells.loc[cells["param"] == "embed.weight", "log10"].round(3).eq(round(math.log10(0.5), 3)).all()
    assert grad_map.dead_params(cells) == ["head.weight"]
    ratios = grad_map.grad_cells(grads, rf.UPDATE_RATIOS)
    assert set(ratios["param"]) == {"embed.weight"}
    spec = grad_map.heatmap(cells, "gradient norm").to_dict()
    assert spec["height"] == {"step": grad_map.ROW_PX} and len(spec["layer"]) == 2
    assert grad_map.grad_cells(pd.DataFrame(), rf.GRAD_NORMS).empty  # a run without probes


def test_folded_alerts_are_named_with_their_severity():
    alerts = [{"code": "slowdown", "severity": "critical"}, {"severity": "warning"}]
    assert live_data.folded_label(alerts) == "2 more alerts: slowdown (critical), alert (warning)"
    assert live_data.folded_label(alerts[:1]) == "1 more alert: slowdown (critical)"
