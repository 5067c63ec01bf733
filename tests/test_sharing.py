"""Runs on one host share its cores and GPUs (issue 15): each run's thread share, the GPU a new run
takes, and the trainer taking a new share while it trains."""

import json

import pytest
import torch
from engine_tiny import tiny_cfg
from test_runs_state import dead_pid, make_run

from trainer import config as C
from trainer.errors import ConfigError
from trainer.rundir import run_format as rf
from trainer.rundir import sharing
from trainer.runs import process
from trainer.training import threads as threads_module
from trainer.training.engine import train


@pytest.mark.parametrize(
    ("cores", "runs", "ranks", "share"),
    [(2, 1, 1, 2), (2, 2, 1, 1), (2, 3, 1, 1), (16, 4, 1, 4), (16, 3, 1, 5), (16, 2, 4, 2), (8, 1, 2, 4)],
)
def test_each_run_takes_an_equal_share_of_the_physical_cores_and_at_least_one(cores, runs, ranks, share):
    assert sharing.thread_share(cores, runs, ranks) == share


def test_the_budget_counts_our_live_runs_on_this_host_only(runs_dir, monkeypatch):
    monkeypatch.setattr(sharing, "physical_cores", lambda: 8)
    assert sharing.thread_budget("auto", runs_dir, "me") == 8
    make_run(runs_dir, "live-1")  # live: this test process
    make_run(runs_dir, "live-2")
    make_run(runs_dir, "done", state=rf.FINISHED)
    make_run(runs_dir, "crashed", pid=dead_pid())
    make_run(runs_dir, "remote", host="gpu-box-7")  # another host's cores are not ours
    make_run(runs_dir, "me")  # the asking run itself counts once
    assert sharing.thread_budget("auto", runs_dir, "me") == 8 // 3
    assert sharing.thread_budget("6", runs_dir, "me") == 6  # a number in the config is taken as it is


def test_threads_config_is_auto_or_a_positive_count():
    assert C.from_dict({}).threads == "auto" and C.from_dict({"threads": 4}).threads == "4"
    for bad in (0, -2, "many", 1.5):
        with pytest.raises(ConfigError, match="threads: .* must be auto or a whole number of threads >= 1"):
            C.from_dict({"threads": bad})


def test_a_new_gpu_run_goes_where_none_of_ours_is_then_to_the_most_free_memory():
    gib = 2**30
    assert sharing.pick_gpu([], {}) is None
    assert sharing.pick_gpu([40 * gib, 80 * gib], {}) == 1
    assert sharing.pick_gpu([40 * gib, 80 * gib], {1: 1}) == 0  # room beats free memory
    assert sharing.pick_gpu([40 * gib, 80 * gib, 10 * gib], {0: 1, 1: 1}) == 2
    assert sharing.pick_gpu([40 * gib, 80 * gib], {0: 2, 1: 2}) == 1


def test_gpus_in_use_reads_our_live_runs_devices(runs_dir):
    make_run(runs_dir, "a", device="cuda:1")
    make_run(runs_dir, "b", device="cuda")  # plain "cuda" is GPU 0
    make_run(runs_dir, "c", device="cpu")
    make_run(runs_dir, "d", device="cuda:1", state=rf.STOPPED)
    assert sharing.gpus_in_use(runs_dir) == {1: 1, 0: 1}


def test_placement_only_when_auto_and_several_gpus(runs_dir, monkeypatch):
    monkeypatch.setattr(sharing, "gpu_free_memory", lambda: [10, 30])
    make_run(runs_dir, "busy", device="cuda:1")
    assert sharing.place_on_gpu("auto", runs_dir) == "cuda:0"
    assert sharing.place_on_gpu("cuda:1", runs_dir) is None  # the config named one
    monkeypatch.setattr(sharing, "gpu_free_memory", lambda: [30])
    assert sharing.place_on_gpu("auto", runs_dir) is None  # one GPU: auto picks it anyway


def test_the_background_starter_passes_the_placement_and_the_thread_share(runs_dir, monkeypatch):
    launched = []
    monkeypatch.setattr(process, "check_data", lambda cfg: None)
    monkeypatch.setattr(
        process, "launch", lambda argv, runs_dir_, run_id, threads=None: launched.append((argv, threads))
    )
    monkeypatch.setattr(sharing, "gpu_free_memory", lambda: [10, 30, 20])
    monkeypatch.setattr(sharing, "physical_cores", lambda: 4)
    make_run(runs_dir, "neighbour", device="cuda:1")
    process.start_new(None, ["lr=3e-4"], runs_dir, "new")
    argv, threads = launched[0]
    assert argv[-4:] == ["--set", "lr=3e-4", "--set", "device=cuda:2"] and threads == 2


def test_launch_gives_the_share_to_openmp_unless_the_user_set_it(runs_dir, monkeypatch):
    envs = []

    class Spy:
        def __init__(self, *args, env=None, **kwargs):
            envs.append(env)
            self.pid = 4242

        def poll(self):
            return None

    monkeypatch.setattr(process.subprocess, "Popen", Spy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    process.launch(["run"], runs_dir, "a", threads=3)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    process.launch(["run"], runs_dir, "b", threads=3)
    process._children.pop(4242, None)
    assert (envs[0]["OMP_NUM_THREADS"], envs[0]["MKL_NUM_THREADS"]) == ("3", "3")
    assert envs[1]["OMP_NUM_THREADS"] == "7"


def test_a_training_run_records_its_share_and_takes_a_new_one_when_a_run_starts_beside_it(runs_dir, monkeypatch):
    monkeypatch.setattr(sharing, "physical_cores", lambda: 4)
    monkeypatch.setattr(threads_module, "RECHECK_S", 0.0)
    seen = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n) or real_set(1))

    rows = []

    class Watcher(threads_module.ThreadShare):
        def recheck(self):  # called at every logged row
            rows.append(1)
            if len(rows) == 20:
                make_run(runs_dir, "neighbour")  # a run of ours starts on this host half-way through
            return super().recheck()

    monkeypatch.setattr("trainer.training.engine.ThreadShare", Watcher)
    assert train(tiny_cfg(threads="auto"), runs_dir, "shared") == rf.FINISHED
    assert seen[0] == 4 and seen[-1] == 2, seen
    status = json.loads((runs_dir / "shared" / rf.STATUS_FILE).read_text())
    assert status["threads"] == 2 and status["device"] == "cpu"


def test_the_logging_api_takes_the_same_share_for_a_users_loop(runs_dir, monkeypatch):
    import trainer

    monkeypatch.setattr(sharing, "physical_cores", lambda: 6)
    make_run(runs_dir, "neighbour")  # one run of ours already live here
    before = torch.get_num_threads()
    try:
        with trainer.init(run_id="mine", runs_dir=runs_dir, threads="auto") as run:
            assert run.threads.threads == 3 and torch.get_num_threads() == 3
            run.log({"train/loss": 1.0}, step=1)
        assert json.loads((runs_dir / "mine" / rf.STATUS_FILE).read_text())["threads"] == 3
        with trainer.init(run_id="untouched", runs_dir=runs_dir) as run:  # threads=None: torch left alone
            assert run.threads is None and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
