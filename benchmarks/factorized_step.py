"""Training-step time of the fixed-rank factorized methods on VGG16, relative to the full model.

VGG16 (CIFAR variant) on random CIFAR-shaped batches; each method (tucker, cp, tt, matrix) at each target
compression and with both implementations (factorized: contract the input with the factors;
reconstructed: rebuild the dense kernel every forward). One SGD step = the method's ``train_step``
(zero_grad, forward, cross-entropy, backward, step). Layers use the ``random`` initialization (the step
time does not depend on the initialization, and decomposing VGG16's 512-channel convs with CP costs minutes).

The configurations run in ``--rounds`` interleaved passes, each pass starting and ending with the full
baseline, so that a shared machine slows all of them alike. Each configuration rebuilds its model and
times ``--steps`` steps after ``--warmup`` untimed ones. The table gives the ratio of the fastest step to
the full model's fastest step (the least disturbed measurement) and, in brackets, the ratio of medians.

    python benchmarks/factorized_step.py --steps 3 --batch 64 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from harness import METHODS, create_model, parameter_summary
from harness.config import Training


def step_times(
    method_name: str, params: dict, batch: int, steps: int, warmup: int, device: torch.device
) -> tuple[list[float], float]:
    """Per-step seconds of ``steps`` training steps, and the model's compression rate."""
    torch.manual_seed(0)
    model = create_model("vgg16")
    full = sum(p.numel() for p in model.parameters())
    method = METHODS.get(method_name)(params, "default")
    model = method.prepare(model, torch.Generator().manual_seed(0)).to(device)
    compression = parameter_summary(model, method.layer_stats(model), full)["compression"]
    optimizer = method.make_optimizer(model, Training(lr=0.01))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    model.train()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        method.train_step(model, optimizer, (x, y), loss_fn)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times, compression


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration and round (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="passes over all configurations, interleaved, to average out a shared machine",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--compressions", type=float, nargs="+", default=[0.5, 0.9])
    ap.add_argument("--methods", nargs="+", default=["tucker", "cp", "tt", "matrix"])
    ap.add_argument("--implementations", nargs="+", default=["factorized", "reconstructed"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"VGG16, batch {args.batch}, {args.rounds} round(s) of {args.steps} timed steps after {args.warmup} "
        f"warm-up per configuration, device {device}, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    configs: list[tuple[str, float | None, str | None]] = [("full", None, None)]
    configs += [(m, c, i) for m in args.methods for c in args.compressions for i in args.implementations]
    times: dict[tuple, list[float]] = {k: [] for k in configs}
    compression: dict[tuple, float] = {}
    for r in range(args.rounds):
        for key in configs + [("full", None, None)]:  # the baseline again at the end of each round
            name, c, impl = key
            params = {} if name == "full" else {"compression": c, "implementation": impl}
            t, compression[key] = step_times(name, params, args.batch, args.steps, args.warmup, device)
            times[key] += t
            print(
                f"  round {r + 1} {name:6s} {'' if c is None else f'compression {c} {impl}':32s} "
                f"{' '.join(f'{x:.3f}' for x in t)} s/step",
                flush=True,
            )

    base = times[("full", None, None)]
    b_min, b_med = min(base), statistics.median(base)
    print(f"\nfull: min {b_min:.3f} s/step, median {b_med:.3f} s/step over {len(base)} steps\n")
    print("Ratio of step time to the full model's: min over steps (median in brackets).\n")
    print("| method | target compression | model compression | factorized | reconstructed |")
    print("|---|---|---|---|---|")
    for name in args.methods:
        for c in args.compressions:
            cells = []
            for impl in ("factorized", "reconstructed"):
                t = times.get((name, c, impl))
                cells.append(f"{min(t) / b_min:.2f}x ({statistics.median(t) / b_med:.2f}x)" if t else "-")
            comp = next(v for k, v in compression.items() if k[0] == name and k[1] == c)
            print(f"| {name} | {c} | {comp:.3f} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
