"""The dashboard under test: `streamlit run app/Home.py` on a free port, a headless Chromium page on
it, and a clean-up that stops every trainer left. Used by the browser tests and
benchmarks/dashboard_latency.py; needs playwright (requirements-test.txt) and /usr/bin/chromium.

with dashboard(runs_dir, env) as url, chromium() as page:
    page.goto(url)
    kill_dashboard(url)   # the server dies as in a crash; trainers it started live on
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from trainer import runs
from trainer.runs import process

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The server behind each URL dashboard() has yielded and not yet cleaned up.
_servers: dict[str, subprocess.Popen] = {}


def server_pid(url: str) -> int:
    """The pid of the Streamlit server dashboard() started on url (for its RSS, or to kill it)."""
    return _servers[url].pid


def kill_dashboard(url: str, sig: int = signal.SIGKILL) -> None:
    """Kill the server on url and its process group at once (a crash or a killed terminal), and
    wait for it. Trainers it launched are in sessions of their own, so they go on."""
    proc = _servers[url]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(10)


def _kill_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def dashboard(runs_dir: Path, extra_env: dict[str, str] | None = None, start_timeout: float = 90.0, root: Path = ROOT):
    """`streamlit run app/Home.py` from the repository root on a free 127.0.0.1 port; yields the URL.
    root: another checkout's root (a benchmark's baseline: `git archive` of an older commit)."""
    port = free_port()
    env = dict(os.environ, TRAINER_RUNS_DIR=str(runs_dir), **(extra_env or {}))
    log = open(Path(runs_dir).parent / f"streamlit-{port}.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/Home.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {start_timeout} s; see {log.name}")
            time.sleep(0.3)
        _servers[url] = proc
        yield url
    finally:
        _servers.pop(url, None)
        _kill_group(proc)
        log.close()


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000, extra_args: list[str] | None = None):
    """A headless Debian Chromium page through playwright (persistent context: own profile dir)."""
    from playwright.sync_api import sync_playwright  # a test dependency (requirements-test.txt)

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS + (extra_args or []),
            viewport={"width": width, "height": height},
        )
        try:
            yield context.new_page() if not context.pages else context.pages[0]
        finally:
            context.close()


def stop_trainers(runs_dir: Path) -> None:
    """Stop every trainer under runs_dir: stop request, verified SIGTERM, then a verified SIGKILL."""
    for info in runs.list_runs(runs_dir):
        status = runs.read_status(Path(runs_dir) / info.run_id) or {}
        with contextlib.suppress(Exception):
            if info.state in ("starting", "running", "stopping"):
                runs.stop(runs_dir, info.run_id, grace_s=5.0)
        process.safe_terminate(status, signal.SIGKILL)  # only if it is still that trainer
