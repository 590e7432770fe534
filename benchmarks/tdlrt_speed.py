"""Epoch time of DLRT and TDLRT (every_step, amortized and periodic) as ratios to the dense ``full`` epoch, LeNet5.

Every run trains LeNet5 on the embedded MNIST subset through ``harness.train.train_run`` with the methods'
defaults (tau 0.1, the training-memory bound, a one-epoch tau warm-up); the time is its own per-epoch clock
(training pass only, ``metrics["epoch_seconds"]``). Runs alternate method by method for ``--reps`` rounds and the
median per method is used. Target (issue 16): DLRT and TDLRT every_step <= 1.05x full.

    python benchmarks/tdlrt_speed.py [--train-subset 10000] [--epochs 2] [--reps 1] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from harness.suite import expand, parse_suite
from harness.train import train_run

VARIANTS = {
    "full": ("full", {}),
    "dlrt every_step": ("dlrt", {}),
    "dlrt amortized": ("dlrt", {"schedule": "amortized"}),
    "tdlrt every_step": ("tdlrt", {}),
    "tdlrt amortized": ("tdlrt", {"schedule": "amortized"}),
    "tdlrt periodic": ("tdlrt", {"schedule": "periodic"}),
    # the earlier defaults (no training-memory bound, no warm-up): the code's speed at the ranks it had before
    "dlrt every_step, earlier defaults": ("dlrt", {"memory_budget": None, "tau_warmup": 0}),
    "tdlrt every_step, earlier defaults": ("tdlrt", {"memory_budget": None, "tau_warmup": 0}),
}


def run(method: str, params: dict, args: argparse.Namespace) -> dict:
    suite = parse_suite(
        {
            "name": "tdlrt-speed",
            "datasets": ["mnist_subset"],
            "models": ["lenet5"],
            "methods": [{"name": method, "params": params}],
            "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.05},
            "budget": {"train_subset": args.train_subset, "test_subset": 1000},
        }
    )
    (spec,) = expand(suite)
    return train_run(spec.config, device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    last: dict[str, dict] = {}
    for _ in range(args.reps):
        for label, (method, params) in VARIANTS.items():
            metrics = run(method, params, args)
            times[label].append(metrics["epoch_seconds"])
            last[label] = metrics
    base = statistics.median(times["full"])
    print(
        f"LeNet5, {args.train_subset} images, {args.epochs} epochs, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'variant':34s} {'epoch s':>8s} {'x full':>7s} {'acc':>6s} {'compr':>6s}  ranks")
    for label in VARIANTS:
        t = statistics.median(times[label])
        m = last[label]
        print(f"{label:34s} {t:8.2f} {t / base:7.2f} {m['final_acc']:6.3f} {m['compression']:6.3f}  {m['ranks'] or ''}")


if __name__ == "__main__":
    main()
