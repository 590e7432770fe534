"""Training-step time of TDLRT (and matrix DLRT) on VGG16 at about 90% compression, against the full model and
the fixed-rank tltorch Tucker baseline at compression 0.9 (factorized implementation), in one run.

VGG16 (CIFAR variant) on random CIFAR-shaped batches, one ``train_step`` of each method per step. The rank-
adaptive methods run at their steady state: every adaptive mode starts at and is capped by ``--rank``
(a fraction of the channels, rounding up; 7/32 gives ranks 14, 28, 56, 112 and about 90% compression of the
conv layers), ``tau`` 0, so each step
augments to twice that rank and truncates back to the cap. The amortized and periodic schedules cycle over
``amortize_steps`` (10) batches, so every configuration is timed over ``--steps`` (a multiple of 10) steps and
the mean step is compared. Configurations run in ``--rounds`` interleaved passes starting and ending with the
full model. Targets (issue 16): periodic <= 1.1x the Tucker 0.9 step, every_step <= 0.45x the full step. For the
amortized and periodic schedules the median step is also printed: nine steps in ten are core-only steps (at the
augmented rank for amortized, at the truncated rank, a fixed-rank Tucker step, for periodic).

    python benchmarks/tdlrt_vgg_step.py --steps 10 --rounds 1 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # imported here, not at module level: asv imports
    from factorized_step import step_times  # every file in benchmarks/ as a module when it discovers benchmarks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration and round (default 10)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--rank", type=float, default=0.21875, help="rank cap of adaptive modes, fraction of channels (rounds up)"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", nargs="+", default=["tdlrt", "dlrt"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    adaptive = {"tau": 0.0, "r_max": args.rank, "initial_rank": args.rank}
    configs = {"full": ("full", {}), "tucker 0.9": ("tucker", {"compression": 0.9, "implementation": "factorized"})}
    for m in args.methods:
        configs[f"{m} every_step"] = (m, adaptive)
        configs[f"{m} amortized"] = (m, {**adaptive, "schedule": "amortized"})
        configs[f"{m} periodic"] = (m, {**adaptive, "schedule": "periodic"})
    print(
        f"VGG16, batch {args.batch}, {args.rounds} round(s) of {args.steps} timed steps after {args.warmup} "
        f"warm-up, device {device}, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    times: dict[str, list[float]] = {k: [] for k in configs}
    compression: dict[str, float] = {}
    for r in range(args.rounds):
        for label in [*configs, "full"]:
            name, params = configs[label]
            t, compression[label] = step_times(name, params, args.batch, args.steps, args.warmup, device)
            times[label] += t
            print(f"  round {r + 1} {label:18s} mean {statistics.mean(t):.3f} s/step", flush=True)
    mean = {k: statistics.mean(v) for k, v in times.items()}
    print("\n| configuration | compression | s/step (mean) | vs full | vs tucker 0.9 |")
    print("|---|---:|---:|---:|---:|")
    for label in configs:
        print(
            f"| {label} | {compression[label]:.3f} | {mean[label]:.3f} | {mean[label] / mean['full']:.2f}x | "
            f"{mean[label] / mean['tucker 0.9']:.2f}x |"
        )
    for label in configs:
        if label.endswith(("amortized", "periodic")):
            med = statistics.median(times[label])
            rank = "augmented" if label.endswith("amortized") else "truncated"
            print(
                f"{label}: median step (a core-only step at the {rank} rank) {med:.3f} s = "
                f"{med / mean['tucker 0.9']:.2f}x tucker 0.9"
            )


if __name__ == "__main__":
    main()
