"""Torn and corrupted files everywhere: torn last lines and garbage lines in every jsonl file, missing
files, a status.json that is empty, not JSON or of the wrong types, a config.yaml that is not YAML.
The reader, the doctor, the CLI (list, diagnose, resume, stop) and every dashboard page keep working
and say what they left out, in the reader's words (trainer.rundir.skipped)."""

from __future__ import annotations

import json

import pytest
import test_app_pages
from app_fixtures import make_run
from test_app_pages import open_app, texts

import trainer.training.engine as engine
from trainer import doctor
from trainer.cli import main
from trainer.rundir import run_format as rf
from trainer.rundir.reader import RunReader

launched = test_app_pages.launched  # the pages' fixture: launches are recorded, no trainer starts

TORN = b'{"step": 61, "train/lo'
GARBAGE = b'garbage\n\x00\xff{]\n["a list"]\n{"no": "step"}\n'


def append(name: str, data: bytes):
    def corrupt(run_dir):
        with open(run_dir / name, "ab") as f:
            f.write(data)

    return corrupt


def replace(name: str, data: bytes | None):
    def corrupt(run_dir):
        path = run_dir / name
        path.unlink()
        if data is not None:
            path.write_bytes(data)

    return corrupt


WRONG_TYPES = {"state": 5, "step": "x", "updated": "y", "pid": "z", "max_steps": "q", "best_val_loss": "b"}
# case -> (corruption, what the reader/doctor must say it left out, or None when nothing is unreadable)
CASES = {
    **{
        f"{name} torn last line": (append(name, TORN), f"left out an incomplete last line of {name} (22 bytes)")
        for name in rf.JSONL_FILES
    },
    # not JSON, not an object, an object without an integer step: 4 lines left out
    **{
        f"{name} garbage lines": (append(name, GARBAGE), f"skipped 4 unreadable lines in {name}")
        for name in rf.JSONL_FILES
    },
    **{f"{name} missing": (replace(name, None), None) for name in (*rf.JSONL_FILES, rf.CONFIG_FILE)},
    "status.json empty": (replace(rf.STATUS_FILE, b""), "skipped status.json: it is empty or not a JSON object"),
    "status.json not JSON": (replace(rf.STATUS_FILE, b'{"state": "runn'), "skipped status.json"),
    "status.json a list": (replace(rf.STATUS_FILE, b"[1, 2]"), "skipped status.json"),
    "status.json wrong types": (replace(rf.STATUS_FILE, json.dumps(WRONG_TYPES).encode()), None),
    "config.yaml not YAML": (
        replace(rf.CONFIG_FILE, b"lr: [unclosed\n"),
        "skipped config.yaml: it is not a YAML mapping",
    ),
    "config.yaml not UTF-8": (replace(rf.CONFIG_FILE, b"\xff\xfe\x00lr: 1\n"), "skipped config.yaml"),
    "config.yaml a list": (replace(rf.CONFIG_FILE, b"- 1\n- 2\n"), "skipped config.yaml"),
}


def says(notes, said: str | None) -> bool:
    """notes say `said` (words of one note), or say nothing when said is None."""
    return any(said in note for note in notes) if said else not notes


def corrupted_run(runs_dir, case: str, run_id: str = "hurt"):
    make_run(runs_dir, run_id, alert=True)
    run_dir = runs_dir / run_id
    with open(run_dir / rf.GRADS_FILE, "wb") as f:
        f.write(b'{"step":7,"time":1.0,"norms":{"w":0.5},"update_ratios":{"w":0.001}}\n')
    corrupt, said = CASES[case]
    corrupt(run_dir)
    return run_dir, said


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
