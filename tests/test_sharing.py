"""Runs on one host share its cores and GPUs (issue 15): each run's thread share, the GPU a new run
takes, and the trainer taking a new share while it trains."""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import torch
from engine_tiny import tiny_cfg
from test_runs_state import dead_pid, make_run

from trainer import config as C
from trainer.errors import ConfigError
from trainer.rundir import host_load, sharing
from trainer.rundir import run_format as rf
from trainer.runs import process
from trainer.training import threads as threads_module
from trainer.training.engine import train


@pytest.mark.parametrize(
    ("cores", "other", "runs", "ranks", "share"),
    [
        (2, 0.0, 1, 1, 2),
        (2, 0.0, 2, 1, 1),
        (2, 0.0, 3, 1, 1),  # never below one thread
        (16, 0.0, 4, 1, 4),
        (16, 0.0, 3, 1, 5),  # never more threads among our runs than cores
        (16, 0.0, 2, 4, 2),
        (8, 0.0, 1, 2, 4),
        (2, 0.2, 1, 1, 2),  # a dashboard's refresh takes no thread
        (2, 1.0, 1, 1, 1),  # a busy loop beside the run takes one core of two
        (2, 2.0, 1, 1, 1),  # a saturated host: still one thread
        (16, 4.1, 2, 1, 6),  # 16 - (4.1 - 0.25) = 12.15 free cores, 2 runs
        (4, 9.0, 1, 1, 1),  # more busy than cores (as measured over logical CPUs): at least one
    ],
)
def test_each_run_takes_an_equal_share_of_the_cores_free_of_other_work(cores, other, runs, ranks, share):
    assert sharing.threads_for(cores, other, runs, ranks) == share


def test_a_running_share_changes_only_past_the_hysteresis_lines():
    # One run on 2 cores gives its second thread back once other work holds over half a core...
    assert sharing.threads_for(2, 0.45, 1, current=2) == 2
    assert sharing.threads_for(2, 0.55, 1, current=2) == 1
    # ... and takes it again only once less than a quarter core is busy.
    assert sharing.threads_for(2, 0.45, 1, current=1) == 1
    assert sharing.threads_for(2, 0.3, 1, current=1) == 1
    assert sharing.threads_for(2, 0.2, 1, current=1) == 2
    assert sharing.threads_for(2, 0.0, 2, current=2) == 1  # a run of ours starts beside it
    assert sharing.threads_for(2, 0.0, 1, current=1) == 2  # and ends
    assert sharing.threads_for(16, 3.4, 1, current=14) == 13  # 16 - (3.4 - 0.5)
    assert sharing.threads_for(16, 3.4, 1, current=12) == 12  # 16 - (3.4 - 0.25) = 12.85: no rise


def test_the_budget_says_what_it_came_from():
    assert sharing.auto_budget(2, 2, other_busy=0.94) == (
        1,
        "2 physical cores, 0.9 busy with other work, 2 runs of ours",
    )
    assert sharing.auto_budget(8, 1, ranks=4) == (
        2,
        "8 physical cores, other work not measured yet, 1 run of ours of 4 processes each",
    )


def test_the_budget_counts_our_live_runs_on_this_host_only(runs_dir, monkeypatch):
    monkeypatch.setattr(sharing, "physical_cores", lambda: 8)
    assert sharing.thread_budget("auto", runs_dir, "me").threads == 8
    make_run(runs_dir, "live-1")  # live: this test process
    make_run(runs_dir, "live-2")
    make_run(runs_dir, "done", state=rf.FINISHED)
    make_run(runs_dir, "crashed", pid=dead_pid())
    make_run(runs_dir, "remote", host="gpu-box-7")  # another host's cores are not ours
    make_run(runs_dir, "me")  # the asking run itself counts once
    assert sharing.thread_budget("auto", runs_dir, "me").threads == 8 // 3
    assert sharing.thread_budget("6", runs_dir, "me") == (6, "threads: 6 in the config")  # taken as it is


def test_other_load_counts_a_busy_process_unless_it_is_one_of_ours():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        proc = psutil.Process(busy.pid)
        time.sleep(0.6)  # CPU it used before the window must count in neither
        ours_without, ours_with = host_load.OtherLoad(2, []), host_load.OtherLoad(2, [proc])
        used_before = host_load.cpu_seconds(proc)
        start = time.monotonic()
        assert ours_with.measure([proc]) is None  # a window under MIN_WINDOW_S is not measured
        time.sleep(1.0)
        other_without, other_with = ours_without.measure([]), ours_with.measure([proc])
        busy_cores = (host_load.cpu_seconds(proc) - used_before) / (time.monotonic() - start)
    finally:
        busy.kill()
        busy.wait()
    assert busy_cores > 0.05, "the busy loop got no CPU at all"
    assert 0.0 <= other_with <= other_without <= 2.0
    assert other_without - other_with == pytest.approx(busy_cores, abs=0.1)


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


def test_a_runs_other_ranks_are_found_as_its_parents_other_children():
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
    try:  # as torchrun's agent starts the ranks of one run
        first, second = (psutil.Process(p.pid) for p in sleepers)
        assert second in host_load.sibling_processes(first) and first not in host_load.sibling_processes(first)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def test_descendants_are_the_children_and_grandchildren_psutil_lists(monkeypatch):
    """The kernel's per-thread lists of children (cheap) give the same processes as psutil's scan of
    every process on the host; where the kernel keeps no such list, psutil's scan is used."""
    grandchild = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", grandchild])  # a script's worker that starts its own
    try:
        me = psutil.Process()
        deadline = time.monotonic() + 20
        while len(me.children(recursive=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = {p.pid for p in me.children(recursive=True)}
        assert len(expected) == 2 and child.pid in expected
        assert {p.pid for p in host_load.descendants(me)} == expected
        monkeypatch.setattr(host_load, "_child_pids", lambda pid: None)  # a kernel without the lists
        assert {p.pid for p in host_load.descendants(me)} == expected
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait()


def test_a_runs_own_children_count_as_ours(runs_dir):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # as trainer.init's doctor
    before = torch.get_num_threads()
    later = None
    try:
        share = threads_module.ThreadShare("auto", runs_dir, "me")
        assert psutil.Process(child.pid) in share._our_processes([])
        # a worker started after that (a data loader's, restarted each epoch) is ours at the next look
        later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        assert psutil.Process(later.pid) in share._our_processes([])
    finally:
        for proc in (child, later):
            if proc is not None:
                proc.kill()
                proc.wait()
        torch.set_num_threads(before)


def test_a_training_run_takes_a_new_share_when_a_run_of_ours_or_other_work_comes(runs_dir, monkeypatch):
    monkeypatch.setattr(sharing, "physical_cores", lambda: 4)
    monkeypatch.setattr(threads_module, "RECHECK_S", 0.0)
    monkeypatch.setattr(threads_module, "FIRST_CHECK_S", 0.0)  # else a quick run logs 10 rows before the first
    seen = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n) or real_set(1))
    rows = []

    def measure(self, ours):  # the load a busy loop beside the run would show, from row 30 on
        rows.append(ours)
        if len(rows) == 15:
            make_run(runs_dir, "neighbour")  # a run of ours starts on this host
        return 2.2 if len(rows) >= 30 else 0.0

    monkeypatch.setattr(host_load.OtherLoad, "measure", measure)
    assert train(tiny_cfg(threads="auto"), runs_dir, "shared") == rf.FINISHED
    assert seen == [4, 2, 1], seen  # (4 - (2.2 - 0.25)) / 2 runs = 1.0
    assert all(psutil.Process() in ours for ours in rows)  # the run's own CPU is never other work
    status = json.loads((runs_dir / "shared" / rf.STATUS_FILE).read_text())
    assert status["threads"] == 1 and status["device"] == "cpu"
    assert status["threads_reason"] == "4 physical cores, 2.2 busy with other work, 2 runs of ours"


def test_a_run_that_starts_during_an_eval_is_given_its_share_before_the_eval_ends(runs_dir, monkeypatch):
    """Seen forking the default run from the dashboard at step 750: the fork took a core while the
    parent evaluated, and the parent's two OpenMP threads on the one left waited for each other at
    every op, for 45 s and more, until the next logged step looked at its share again."""
    from trainer.training import engine

    monkeypatch.setattr(sharing, "physical_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "RECHECK_S", 0.0)
    monkeypatch.setattr(threads_module, "FIRST_CHECK_S", 0.0)
    monkeypatch.setattr(host_load.OtherLoad, "measure", lambda self, ours: 0.0)
    in_eval, seen = [False], []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append((n, in_eval[0])) or real_set(1))
    real_evaluate = engine.TrainLoop._evaluate

    def evaluate(self):  # the first eval: a run of ours starts on this host as it begins
        if not (runs_dir / "neighbour").exists():
            make_run(runs_dir, "neighbour")
            in_eval[0] = True
        real_evaluate(self)
        in_eval[0] = False

    monkeypatch.setattr(engine.TrainLoop, "_evaluate", evaluate)
    assert train(tiny_cfg(threads="auto", eval_steps=3), runs_dir, "shared") == rf.FINISHED
    assert seen == [(2, False), (1, True)], seen  # 2 cores / 2 runs, taken inside the eval


def test_the_logging_api_takes_the_same_share_for_a_users_loop(runs_dir, monkeypatch):
    import trainer

    monkeypatch.setattr(sharing, "physical_cores", lambda: 6)
    make_run(runs_dir, "neighbour")  # one run of ours already live here
    before = torch.get_num_threads()
    try:
        with trainer.init(run_id="mine", runs_dir=runs_dir, threads="auto") as run:
            assert run.threads.threads == 3 and torch.get_num_threads() == 3
            run.log({"train/loss": 1.0}, step=1)
        status = json.loads((runs_dir / "mine" / rf.STATUS_FILE).read_text())
        assert (status["threads"], status["threads_reason"]) == (3, run.threads.reason)
        assert run.threads.load is not None  # the same measuring of other work as our trainer's
        with trainer.init(run_id="untouched", runs_dir=runs_dir) as run:  # threads=None: torch left alone
            assert run.threads is None and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_the_trainers_system_row_counts_the_cores_other_processes_keep_busy():
    from trainer.training.probes import SystemProbe

    probe = SystemProbe(torch.device("cpu"))
    with_children = SystemProbe(torch.device("cpu"), children=True)  # as trainer.init reads it
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        spin = psutil.Process(spinner.pid)
        probe.read(), with_children.read()  # the spinner's start-up falls before this window
        cpu_before, wall_before = sum(spin.cpu_times()[:2]), time.monotonic()
        time.sleep(1.0)
        busy, busy_but_ours = probe.read()[rf.OTHER_CPU], with_children.read()[rf.OTHER_CPU]
        spun = (sum(spin.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before)
    finally:
        spinner.kill()
        spinner.wait()
    # Whatever else the machine runs, the spinner's own share is in it (this process's is not), and
    # counted as this process's own child, it is not.
    assert spun > 0.2 and busy >= spun - 0.15, (busy, spun)
    assert busy <= psutil.cpu_count() + 0.1
    assert busy - busy_but_ours >= spun - 0.2, (busy, busy_but_ours, spun)


def test_the_system_row_counts_the_time_its_threads_waited_for_a_core():
    """sys/cpu_wait: seconds a second this process's threads were ready to run but had no core. A
    loop beside twice as many busy processes as the host has cores waits most of the time; alone,
    almost never (measured: 0.016-0.025 s a second for the default run alone)."""
    from trainer.training.probes import SystemProbe

    def spin(seconds: float) -> float:
        probe.read()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return probe.read()[rf.CPU_WAIT]

    probe = SystemProbe(torch.device("cpu"))
    alone = spin(0.5)
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (psutil.cpu_count() or 1))
    ]
    try:
        time.sleep(0.3)
        shared = spin(1.0)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    # beside 2 busy processes a core this thread gets about a third of one: it waits ~2/3 of the time
    assert 0 <= alone < 0.3 and shared > max(0.3, alone + 0.2), (alone, shared)


def test_rows_closer_than_the_sharing_window_leave_it_running_to_a_later_row():
    # A run logging every 10 ms got no sys/other_cpu at all: each row restarted a window too short to report.
    from trainer.training.probes import SHARING_WINDOW_S, SystemProbe

    probe = SystemProbe(torch.device("cpu"))
    rows = []
    for _ in range(30):
        time.sleep(SHARING_WINDOW_S / 5)
        rows.append(probe.read())
    with_sharing = [row for row in rows if rf.OTHER_CPU in row]
    assert 2 <= len(with_sharing) <= 12, len(with_sharing)  # about one row in five, each over a whole window
    assert all(rf.RSS_MB in row and rf.CPU_PERCENT in row for row in rows)  # the rest on every row


def test_waiting_seconds_grow_with_time_and_say_none_for_a_process_that_is_gone():
    first = host_load.waiting_seconds()
    second = host_load.waiting_seconds(os.getpid())
    assert first is not None and 0 <= first <= second
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert host_load.waiting_seconds(gone.pid) is None
