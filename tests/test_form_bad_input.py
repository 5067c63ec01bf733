"""Bad input typed into the dashboard's forms (issue 12): the new-run form, the runs table's Resume,
the Config page's resume and the fork form give the very message the CLI gives for the same input,
shown on the page, and the runs directory stays byte for byte the same.

The cases are tests/test_bad_input.py's that a form can receive, plus malformed YAML in the fields
(every field is read as YAML, as `--set` is). For each, the CLI is run on the same input first and
its error line is the expected text. Nothing is launched: process.launch fails the test if called.
"""

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_pages import open_app, unescaped
from test_bad_input import CASES, SMALL, snapshot

from app import run_forms, run_watch
from trainer import cli
from trainer.rundir import run_format as rf
from trainer.runs import process

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning")


def _only_sets_and_id(argv: list[str]) -> bool:
    """A `run` case a new-run form can express: --set pairs and a run id, nothing else."""
    rest = [a for a in argv[1:] if a not in ("--set", "--run-id", "--background")]
    return argv[0] == "run" and not any(a.startswith("--") for a in rest)


NEW_RUN = {}
for _name, (_argv, _) in CASES.items():  # one case per form input: --background is what a form always does
    if _only_sets_and_id(_argv) and [a for a in _argv if a != "--background"] not in NEW_RUN.values():
        NEW_RUN[_name] = _argv
NEW_RUN |= {
    "malformed YAML in a field": ["run", "--set", "lr=[1e-3"],
    "malformed YAML mapping in a field": ["run", "--set", "model.n_layer={a: 1"],
    "a YAML list with a comma in the extra box": ["run", "--set", "beta1=[0.9, 2]"],
    "a YAML alias in the extra box": ["run", "--set", "beta2=&a [*a, *a]"],
    "a YAML mapping with spaces in the extra box": ["run", "--set", "seed={a: 1, b: 2}"],
}
RESUME = {  # the Config page's "Resume with changes"
    "resume of a finished run without more steps": [],
    "resume with an unknown key": ["lr_typo=1"],
    "resume with NaN": ["max_steps=40", "lr=nan"],
    "resume with malformed YAML": ["max_steps=40", "lr=[1e-3"],
    "resume with a YAML list": ["max_steps=40", "lr=[1e-3, 2]"],
    "resume that changes shapes": ["max_steps=40", "model.n_embd=64"],
    "resume with a pair without =": ["max_steps=40", "lr"],
}
FORK = {  # the fork form: (new run id, changes)
    "fork onto an existing run": ("done", []),
    "fork to an id with a separator": ("a/b", []),
    "fork to ..": ("..", []),
    "fork that changes shapes": ("y", ["model.n_embd=64"]),
    "fork with infinity": ("y", ["lr=inf"]),
    "fork with an unknown nested key": ("y", ["model.n_layr=2"]),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished run 'done' (20 steps, checkpoints last, best, 10 and 20), as in test_bad_input."""
    runs_dir = tmp_path_factory.mktemp("form-bad-input") / "runs"
    assert cli.main(["run", "--run-id", "done", "--quiet", "--set", *SMALL, "--runs-dir", str(runs_dir)]) == 0
    return runs_dir


@pytest.fixture
def runs_dir(world, tmp_path, monkeypatch):
    """A copy of the world for one test, which the page is pointed at; launching fails the test."""
    copy = tmp_path / "runs"
    shutil.copytree(world, copy)

    def no_launch(argv, *args, **kwargs):
        raise AssertionError(f"bad input reached a launch: {argv}")

    monkeypatch.setattr(process, "launch", no_launch)
    monkeypatch.setenv("TRAINER_RUNS_DIR", str(copy))
    yield copy
    run_watch.stop_watcher()


def cli_error(argv: list[str], runs_dir: Path, capsys) -> str:
    """The CLI's message for argv (without 'error: '); it must refuse and write nothing."""
    before = snapshot(runs_dir)
    capsys.readouterr()
    assert cli.main([*argv, "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert snapshot(runs_dir) == before
    return steady(err.removeprefix("error: "))


def steady(message: str) -> str:
    """The message with the device's free memory (it changes from one moment to the next) left out."""
    return re.sub(r"has [\d.,]+ GiB free", "has ... GiB free", message)


def shown_errors(at: AppTest) -> list[str]:
    assert not at.exception, at.exception
    return [steady(unescaped(str(e.value))) for e in at.error]


def set_pairs(argv: list[str]) -> list[str]:
    """The key=value pairs of argv's --set options (each takes one or more)."""
    pairs, taking = [], False
    for arg in argv:
        if arg.startswith("--"):
            taking = arg == "--set"
        elif taking:
            pairs.append(arg)
    return pairs


def fill_new_run_form(at: AppTest, pairs: list[str], run_id: str = "") -> None:
    """Each pair into its own field when the form has one, else into the "more changes" box."""
    preset = Path(at.session_state["new_preset"]).stem
    extra = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        if "=" in pair and key in run_forms.FORM_KEYS:
            at.text_input(key=f"new_{preset}_{key}").input(value)
        else:
            extra.append(pair)
    at.text_area(key="new_extra").input("\n".join(extra))
    at.text_input(key="new_run_id").input(run_id)
    at.button(key="FormSubmitter:new_run_form-Start run").click().run()


@pytest.mark.parametrize("case", list(NEW_RUN))
def test_the_new_run_form_gives_the_clis_message_and_writes_nothing(case, runs_dir, capsys):
    argv = NEW_RUN[case]
    run_id = argv[argv.index("--run-id") + 1] if "--run-id" in argv else ""
    expected = cli_error(["run", "--background", *argv[1:]], runs_dir, capsys)
    before = snapshot(runs_dir)
    at = open_app()
    fill_new_run_form(at, set_pairs(argv), run_id)
    assert expected in shown_errors(at), (case, expected)
    assert snapshot(runs_dir) == before, f"{case}: the form changed the runs directory"


@pytest.mark.parametrize("case", list(RESUME))
def test_the_config_pages_resume_gives_the_clis_message_and_writes_nothing(case, runs_dir, capsys):
    pairs = RESUME[case]
    expected = cli_error(["resume", "done", "--background", *(["--set", *pairs] if pairs else [])], runs_dir, capsys)
    before = snapshot(runs_dir)
    at = open_app("config.py", selected_runs=["done"])
    at.text_area(key="config_sets").input("\n".join(pairs))
    at.button(key="FormSubmitter:config_edit-Resume with changes").click().run()
    assert expected in shown_errors(at), (case, expected)
    assert snapshot(runs_dir) == before, f"{case}: the form changed the runs directory"


def test_the_runs_tables_resume_of_a_finished_run_gives_the_clis_message(runs_dir, capsys):
    expected = cli_error(["resume", "done"], runs_dir, capsys)
    assert CASES["resume of a finished run without more steps"][1] in expected
    before = snapshot(runs_dir)
    at = open_app()
    at.button(key="resume_done").click().run()
    assert expected in shown_errors(at)
    at.run()  # still shown after the table's next refresh
    assert expected in shown_errors(at)
    assert snapshot(runs_dir) == before


@pytest.mark.parametrize("case", list(FORK))
def test_the_fork_form_gives_the_clis_message_and_writes_nothing(case, runs_dir, capsys):
    new_id, pairs = FORK[case]
    sets = ["--set", *pairs] if pairs else []
    expected = cli_error(
        ["fork", "done", "--from", "last", "--run-id", new_id, "--background", *sets], runs_dir, capsys
    )
    before = snapshot(runs_dir)
    at = open_app()
    at.button(key="fork_done").click().run()
    at.text_input(key="fork_new_id").input(new_id)
    at.text_area(key="fork_sets_text").input("\n".join(pairs))
    at.button(key="FormSubmitter:fork_form-Start fork").click().run()
    assert expected in shown_errors(at), (case, expected)
    assert snapshot(runs_dir) == before, f"{case}: the form changed the runs directory"


def test_a_fork_from_a_checkpoint_deleted_since_the_form_was_drawn_gives_the_clis_message(runs_dir, capsys):
    """The fork form offers only checkpoints that exist; one can vanish before Start is pressed
    (the trainer keeps only the newest keep_checkpoints)."""
    at = open_app()
    at.button(key="fork_done").click().run()
    at.selectbox(key="fork_from").set_value("10")
    at.text_input(key="fork_new_id").input("x")
    (runs_dir / "done" / rf.CHECKPOINT_DIR / rf.CKPT_STEP_PATTERN.format(step=10)).unlink()
    expected = cli_error(["fork", "done", "--from", "10", "--run-id", "x", "--background"], runs_dir, capsys)
    assert "has no checkpoint '10'" in expected
    before = snapshot(runs_dir)
    at.button(key="FormSubmitter:fork_form-Start fork").click().run()
    assert expected in shown_errors(at)
    assert snapshot(runs_dir) == before
