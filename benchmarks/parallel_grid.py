"""Grid wall time with 1 and 2 local workers (and Ray on 2 CPUs), printed as speed-ups over 1 worker.

Each measurement trains the same small grid (LeNet5 on the embedded MNIST subset) into a fresh store
through the CLI, so process start-up and store writes are counted. First it measures the machine's own ceiling:
the same single-threaded compute (float32 matrix products) once alone and then twice at once; the work done per
second by two processes over one is the most any two workers can gain here (near 2 on two physical cores, far
less when the two CPUs are hyperthreads of one core or the host is busy).

    python benchmarks/parallel_grid.py [--runs 8] [--epochs 2] [--train-subset 3000] [--no-ray]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def timed(suite: Path, out: Path, *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "--results", str(out), *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


COMPUTE = (
    "import torch; torch.set_num_threads(1); a = torch.randn(768, 768); b = a.clone()\n"
    "for _ in range({n}): b = a @ b / 30"
)


def ceiling(n: int = 600) -> tuple[float, float, float]:
    """Seconds of one single-threaded compute process alone, of two at once, and the throughput ratio."""
    cmd = [sys.executable, "-c", COMPUTE.format(n=n)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd) for _ in range(2)]
    for p in procs:
        p.wait()
    two = time.perf_counter() - t0
    return one, two, 2 * one / two


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=3000)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    one, two, ratio = ceiling()
    print(
        f"machine ceiling: one compute process {one:.1f} s, two at once {two:.1f} s: {ratio:.2f}x the work per second"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        suite = tmp / "grid.yaml"
        suite.write_text(
            yaml.safe_dump(
                {
                    "name": "parallel_bench",
                    "datasets": ["mnist_subset"],
                    "models": ["lenet5"],
                    "methods": ["full"],
                    "seeds": list(range(args.runs)),
                    "device": "cpu",
                    "training": {"epochs": args.epochs, "batch_size": 64},
                    "budget": {"train_subset": args.train_subset, "test_subset": 1000},
                }
            )
        )
        single = timed(suite, tmp / "w1t1", "--workers", "1", "--threads", "1")
        one = timed(suite, tmp / "w1", "--workers", "1")
        two = timed(suite, tmp / "w2", "--workers", "2")
        print(
            f"grid of {args.runs} runs: 1 worker with 1 thread {single:.1f} s, 1 worker with all threads "
            f"{one:.1f} s, 2 workers {two:.1f} s"
        )
        print(
            f"speed-up of 2 workers: {single / two:.2f}x over 1 worker with 1 thread, {one / two:.2f}x over 1 "
            f"worker using every core for intra-op parallelism"
        )
        if not args.no_ray:
            r = timed(suite, tmp / "ray", "--executor", "ray", "--cpus-per-run", "1")
            print(f"ray (local instance, 2 CPUs, 1 CPU per run): {r:.1f} s, speed-up {one / r:.2f}x")


if __name__ == "__main__":
    main()
