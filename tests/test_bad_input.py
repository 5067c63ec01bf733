"""Bad input gets one clear line that names the problem, exit code 2, and nothing is written or lost
(issue 12). Each case is what a user could type; the runs directory holds a finished run throughout,
and it must be byte for byte the same after every refusal."""

from pathlib import Path

import pytest

from trainer import cli

SMALL = ["max_steps=20", "warmup_steps=2", "eval_interval=10", "eval_steps=2", "checkpoint_interval=10"]
SMALL += ["log_interval=5", "sample_interval=10", "sample_length=8", "model.n_layer=1", "model.n_embd=32"]
SMALL += ["model.n_head=2", "block_size=16", "batch_size=4", "threads=1"]

# Each list holds 9 aliases of the one before: 9^9 values once expanded.
BOMB_LINES = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
BOMB_LINES += [f"{n}: &{n} [{','.join([f'*{m}'] * 9)}]" for m, n in zip("abcdefgh", "bcdefghi")]
BOMB = "{" + ", ".join(BOMB_LINES) + "}"

CASES = {
    # config, through --set
    "unknown key": (["run", "--set", "lr_typo=1"], "unknown config key lr_typo; allowed keys:"),
    "unknown nested key": (["run", "--set", "model.n_layr=2"], "unknown config key model.n_layr"),
    "wrong type": (["run", "--set", "batch_size=abc"], "batch_size: 'abc' is not a valid int"),
    "boolean for a number": (["run", "--set", "max_steps=true"], "max_steps: True is not a valid int"),
    "zero": (["run", "--set", "batch_size=0"], "batch_size: 0 must be >= 1"),
    "negative": (["run", "--set", "lr=-1"], "lr: -1.0 must be > 0"),
    "NaN": (["run", "--set", "lr=nan"], "lr: 'nan' is not a valid float"),
    "infinity": (["run", "--set", "lr=inf"], "lr: 'inf' is not a valid float"),
    "fraction out of range": (["run", "--set", "dropout=1.5"], "dropout: 1.5 must be in [0, 1)"),
    "open fraction at its bound": (["run", "--set", "val_split=1.0"], "val_split: 1.0 must be in (0, 1)"),
    "choice": (["run", "--set", "schedule=foo"], "schedule: 'foo' must be one of constant, warmup_cosine"),
    "threads": (["run", "--set", "threads=0"], "threads: '0' must be auto or a whole number"),
    "no layers": (["run", "--set", "model.n_layer=0"], "model.n_layer: 0 must be >= 1"),
    "heads do not divide": (["run", "--set", "model.n_head=3"], "model.n_head: 3 does not divide model.n_embd 128"),
    "warmup past the end": (["run", "--set", "max_steps=20"], "warmup_steps: 100 is not below max_steps 20"),
    "no such task": (["run", "--set", "task=nope"], "task: 'nope' must be one of char_lm"),
    "task as a path": (["run", "--set", "task=../x"], "task: '../x' must be a task name"),
    "no such device": (["run", "--set", "device=tpu"], "device: 'tpu' must be auto, cpu, cuda, cuda:N or mps"),
    "amp off CUDA": (["run", "--set", "amp=bf16"], "amp: 'bf16' needs a CUDA device"),
    "--set without =": (["run", "--set", "lr"], "--set 'lr': expected key=value"),
    "block beyond the data": (["run", "--set", "block_size=200000"], "block_size 200000 exceeds"),
    "a model that cannot fit": (
        ["run", "--set", "model.n_embd=65536", "model.n_layer=64", "model.n_head=8"],
        "GiB to train (weights, gradients and AdamW's moments in fp32) but cpu has",
    ),
    "the same, in the background": (
        ["run", "--background", "--set", "model.n_embd=65536", "model.n_layer=64", "model.n_head=8"],
        "lower model.n_embd or model.n_layer",
    ),
    # config files
    "missing file": (["run", "--config", "{tmp}/nope.yaml"], "config file {tmp}/nope.yaml not found"),
    "malformed YAML": (
        ["run", "--config", "{tmp}/malformed.yaml"],
        "is not valid YAML: expected ',' or ']', but got '<stream end>' at line 2",
    ),
    "YAML that is not a mapping": (["run", "--config", "{tmp}/list.yaml"], "must hold a mapping of keys to values"),
    "unquoted off": (
        ["run", "--config", "{tmp}/off.yaml"],
        "amp: False is a boolean to YAML (unquoted off/on/yes/no); quote it",
    ),
    # under options, which takes any mapping: 9^9 values once expanded, in a file of 1 KB
    "YAML alias bomb": (
        ["run", "--config", "{tmp}/bomb.yaml"],
        "bomb.yaml expands to more than 100,000 values through its YAML aliases",
    ),
    "YAML that contains itself": (
        ["run", "--config", "{tmp}/loop.yaml"],
        "loop.yaml contains itself through a YAML alias",
    ),
    "YAML alias bomb in a value": (["run", "--set", f"options.x={BOMB}"], "expands to more than 100,000 values"),
    # run ids and commands
    "id with a separator": (["run", "--run-id", "a/b"], "invalid run id 'a/b'"),
    "id ..": (["run", "--run-id", ".."], "invalid run id '..'"),
    "id escaping the runs dir": (["resume", "../done"], "invalid run id '../done'"),
    "run over an existing run": (["run", "--run-id", "done"], "run 'done' already exists"),
    "fork onto an existing run": (["fork", "done", "--run-id", "done"], "run 'done' already exists"),
    "fork from a step without a checkpoint": (
        ["fork", "done", "--from", "300", "--run-id", "x"],
        "run 'done' has no checkpoint '300' (step_00000300.pt); this run has: last, best, 10, 20",
    ),
    "fork that changes shapes": (
        ["fork", "done", "--run-id", "y", "--set", "model.n_embd=64"],
        "model.n_embd: cannot change from 32 to 64 on fork",
    ),
    "resume of an unknown run": (["resume", "ghost"], "no run 'ghost' under"),
    "resume of a finished run without more steps": (
        ["resume", "done"],
        "run 'done' finished at step 20 of max_steps 20; to train it longer, resume with more steps",
    ),
    "stop of a finished run": (["stop", "done"], "run 'done' is finished, so there is nothing to stop"),
    "diagnose of a missing directory": (["diagnose", "{tmp}/nowhere"], "no run directory {tmp}/nowhere"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    runs_dir = tmp / "runs"
    assert cli.main(["run", "--run-id", "done", "--quiet", "--set", *SMALL, "--runs-dir", str(runs_dir)]) == 0
    (tmp / "malformed.yaml").write_text("lr: [1e-3\n")
    (tmp / "list.yaml").write_text("- lr\n- 3e-4\n")
    (tmp / "off.yaml").write_text("amp: off\n")
    (tmp / "bomb.yaml").write_text("options:\n" + "".join(f"  {line}\n" for line in BOMB_LINES))
    (tmp / "loop.yaml").write_text("options: &loop {again: *loop}\n")
    return tmp, runs_dir


def snapshot(runs_dir: Path) -> dict:
    """Every file's bytes and every directory (None), so an empty directory left behind shows too."""
    return {str(p.relative_to(runs_dir)): p.read_bytes() if p.is_file() else None for p in sorted(runs_dir.rglob("*"))}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(case, world, capsys):
    tmp, runs_dir = world
    argv, expected = CASES[case]
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    before = snapshot(runs_dir)
    capsys.readouterr()
    code = cli.main([*argv, "--runs-dir", str(runs_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2, (case, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert expected.replace("{tmp}", str(tmp)) in err, err
    assert snapshot(runs_dir) == before, f"{case}: something in the runs directory changed"


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "inf"])
def test_a_bad_stop_grace_in_the_environment_is_refused_by_name(raw, world, capsys, monkeypatch):
    from trainer import runs

    tmp, runs_dir = world
    before = snapshot(runs_dir)
    monkeypatch.setenv(runs.STOP_GRACE_ENV, raw)
    capsys.readouterr()
    assert cli.main(["stop", "done", "--wait", "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: TRAINER_STOP_GRACE_S={raw!r}: give the seconds a run has to stop before SIGTERM, a positive number (default 10)"
    )
    assert snapshot(runs_dir) == before
    monkeypatch.setenv(runs.STOP_GRACE_ENV, " 3.5 ")
    assert runs.stop_grace_s() == 3.5
    monkeypatch.delenv(runs.STOP_GRACE_ENV)
    assert runs.stop_grace_s() == runs.DEFAULT_STOP_GRACE_S == 10
