"""DDP on CPU: 2 processes (torchrun, gloo) against 1 process on the same total batch, for the
default char GPT (configs/shakespeare_char.yaml), a few hundred steps each.

    python benchmarks/ddp.py                       # 200 steps, total batch 12 (6 per rank under DDP)
    python benchmarks/ddp.py --steps 300 --batch 24

Both runs go through the CLI (`python -m trainer run` and `torchrun --standalone
--nproc_per_node=2 -m trainer run`), so they are what a user gets. Threads are split fairly: the
single process may use every core, each DDP rank gets cores / 2 (torchrun's own default is 1);
a third run, one process on one thread, shows what one rank's core does alone.
Throughput is the median of the logged speed/tokens_per_s rows (tokens of all ranks; eval and
sampling excluded by the engine) after the first 5 rows; wall time includes start-up and
checkpoints. The machine may be shared: the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.rundir.jsonl import read_records

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], threads: int, runs_dir: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TRAINER_RUNS_DIR": str(runs_dir)}
    for name in ("BATCH_SIZE", "BLOCK_SIZE", "LEARNING_RATE", "MAX_STEPS"):
        env.pop(name, None)  # the developer's shell must not change the benchmark
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def tokens_per_s(run_dir: Path, skip_rows: int = 5) -> float:
    rows = [r for r in read_records(run_dir / "metrics.jsonl") if r.get("speed/tokens_per_s") is not None]
    values = [r["speed/tokens_per_s"] for r in rows[skip_rows:]] or [r["speed/tokens_per_s"] for r in rows]
    return statistics.median(values)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=12, help="total batch (sequences per step, all ranks)")
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args(argv)
    if args.batch % args.nproc:
        sys.exit(f"--batch {args.batch} must divide by --nproc {args.nproc}; try --batch {args.batch * args.nproc}")
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        sys.exit("torchrun not found: install torch into this environment (pip install torch)")
    cores = os.cpu_count() or 1
    common = ["--config", "configs/shakespeare_char.yaml", "--set", f"max_steps={args.steps}", "device=cpu"]
    common += [f"eval_interval={args.steps}", "eval_steps=10", f"sample_interval={args.steps}"]
    common += [f"checkpoint_interval={args.steps}", "warmup_steps=20"]
    print(f"{cores} cores, load average {os.getloadavg()}; {args.steps} steps, total batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)

        def single_cmd(run_id: str) -> list[str]:
            return [sys.executable, "-m", "trainer", "run", "--run-id", run_id, *common, f"batch_size={args.batch}"]

        single_wall = run(single_cmd("single"), cores, runs_dir)
        single = tokens_per_s(runs_dir / "single")
        ddp_cmd = [torchrun, "--standalone", f"--nproc_per_node={args.nproc}", "-m", "trainer", "run"]
        ddp_cmd += ["--run-id", "ddp", *common, f"batch_size={args.batch // args.nproc}"]
        ddp_wall = run(ddp_cmd, max(1, cores // args.nproc), runs_dir)
        ddp = tokens_per_s(runs_dir / "ddp")
        # reference: one process on one core, what each DDP rank has
        one_wall = run(single_cmd("one-thread"), 1, runs_dir)
        one = tokens_per_s(runs_dir / "one-thread")
    print(
        f"1 process, {cores} threads, batch {args.batch}:       {single:>10,.0f} tokens/s  (wall {single_wall:.1f} s)"
    )
    print(
        f"DDP {args.nproc} processes x {max(1, cores // args.nproc)} threads, batch {args.batch // args.nproc} each: "
        f"{ddp:>10,.0f} tokens/s  (wall {ddp_wall:.1f} s)"
    )
    print(f"1 process, 1 thread, batch {args.batch} (reference):    {one:>10,.0f} tokens/s  (wall {one_wall:.1f} s)")
    print(f"ratio DDP / 1 process: {ddp / single:.2f}x  (DDP / 1 process on 1 thread: {ddp / one:.2f}x)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
