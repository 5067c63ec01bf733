"""Torn and corrupted files everywhere: torn last lines and garbage lines in every jsonl file, missing
files, a status.json that is empty, not JSON or of the wrong types, a config.yaml that is not YAML.
The reader, the doctor, the CLI (list, diagnose, resume, stop) and every dashboard page keep working
and say what they left out, in the reader's words (trainer.rundir.skipped)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import test_app_pages
from app_fixtures import make_run
from engine_tiny import ROOT
from test_app_pages import open_app, texts

import trainer.training.engine as engine
from trainer import doctor
from trainer.cli import main
from trainer.rundir import run_format as rf
from trainer.rundir.reader import RunReader

launched = test_app_pages.launched  # the pages' fixture: launches are recorded, no trainer starts

_spec = importlib.util.spec_from_file_location("corruption", ROOT / "benchmarks" / "corruption.py")
corruption = sys.modules["corruption"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corruption)
CASES, says = corruption.FILE_CASES, corruption.says


def corrupted_run(runs_dir, case: str):
    return corruption.corrupted_run(make_run, runs_dir, case)


@pytest.mark.parametrize("case", list(CASES))
def test_the_reader_the_doctor_and_the_cli_read_what_is_left_and_say_what_they_skipped(
    case, runs_dir, monkeypatch, capsys
):
    run_dir, said = corrupted_run(runs_dir, case)
    # the reader
    snap = RunReader(run_dir).snapshot()
    assert snap.exists and not snap.error
    assert says(snap.skipped, said), snap.skipped
    if "metrics.jsonl missing" not in case:
        assert len(snap.metrics) == 60 and snap.metrics["step"].max() == 60
    # the doctor
    result = doctor.diagnose(run_dir)
    assert says(result["run"]["skipped"], said), result["run"]["skipped"]
    assert (said or "") in doctor.to_markdown(result)
    # the CLI: a clean exit, or one "error:" line, never a traceback
    capsys.readouterr()
    assert main(["list", "--runs-dir", str(runs_dir)]) == 0
    listed = capsys.readouterr().out
    assert "hurt" in listed and ("skipped status.json" in listed) == ("skipped status.json" in (said or ""))
    assert main(["diagnose", "hurt", "--runs-dir", str(runs_dir)]) == 0
    assert (said or "# Training diagnosis") in capsys.readouterr().out
    assert main(["stop", "hurt", "--runs-dir", str(runs_dir)]) == 2  # a finished (or unknown) run
    err = capsys.readouterr().err
    assert err.startswith("error: run 'hurt' ") and len(err.splitlines()) == 1, err
    resumed = []
    monkeypatch.setattr(engine, "train", lambda *a, **k: resumed.append(a) or rf.FINISHED)
    code = main(["resume", "hurt", "--runs-dir", str(runs_dir), "--set", "max_steps=200"])
    err = capsys.readouterr().err
    if "config.yaml" in case:  # nothing to resume with: said in one line
        assert code == 2 and err.startswith("error: run 'hurt' has no readable config.yaml") and not resumed
    else:
        assert code == 0 and len(resumed) == 1, err


COMBINED = {  # every page on one run holding several corruptions at once
    "unreadable": ("metrics.jsonl garbage lines", "events.jsonl torn last line", "status.json not JSON"),
    "missing": ("samples.jsonl missing", "events.jsonl missing", "config.yaml not YAML"),
}


@pytest.mark.parametrize("combined", list(COMBINED))
@pytest.mark.parametrize("page", ["live.py", "samples.py", "config.py", "diagnosis.py", "compare.py", "system.py"])
@pytest.mark.usefixtures("launched")
def test_every_page_shows_a_corrupted_run_and_says_what_it_skipped(combined, page, runs_dir):
    make_run(runs_dir, "hurt", alert=True)
    make_run(runs_dir, "whole")
    saids = []
    for case in COMBINED[combined]:
        corrupt, said = CASES[case]
        corrupt(runs_dir / "hurt")
        saids.append(said)
    at = open_app(page, selected_runs=["hurt", "whole"] if page == "compare.py" else ["hurt"])
    at.run()  # the fragments' second pass
    assert not at.exception, at.exception
    shown = texts(at)
    if page != "system.py":  # System lists live processes only
        for said in filter(None, saids):
            assert said in shown.replace("\\", ""), shown


@pytest.mark.usefixtures("launched")
def test_the_runs_table_shows_a_run_with_an_unreadable_status(runs_dir):
    make_run(runs_dir, "hurt")
    CASES["status.json not JSON"][0](runs_dir / "hurt")
    at = open_app()
    assert not at.exception
    assert "skipped status.json: it is empty or not a JSON object" in texts(at)
