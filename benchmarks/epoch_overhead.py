"""How much does the harness add to training? Epoch time of harness's loop vs a minimal hand loop.

Both loops train the same model on the same device tensors with the same optimizer and batches; the
harness side is ``harness.train.train_run`` (method ``full``), timed by its own per-epoch clock (training
pass only), the hand side a dozen-line loop. Runs alternate (A B A B ...) and the median ratio is printed.

    python benchmarks/epoch_overhead.py [--reps 3] [--vgg-batches 30] [--mnist-root DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from harness.data import crop_flip, load_tensors
from harness.models import create_model
from harness.suite import expand, parse_suite
from harness.train import train_run


def register_cifar_shaped(n: int) -> None:
    """Random CIFAR-shaped data (CIFAR-10 itself is not available on every machine)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # imported here: asv imports every file in
    from random_cifar import register_random_cifar  # benchmarks/ as a module

    register_random_cifar("cifar_shaped", n, 256)


def hand_epoch(model_name, data, batch_size, lr, seed, augment, shape, device) -> float:
    torch.manual_seed(seed)
    model = create_model(model_name, **shape).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device=device).manual_seed(seed)
    n = len(data.train_x)
    t0 = time.perf_counter()
    order = torch.randperm(n, device=device, generator=gen)
    for s in range(n // batch_size):
        idx = order[s * batch_size : (s + 1) * batch_size]
        x = data.train_x[idx]
        if augment:
            x = crop_flip(x, gen)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), data.train_y[idx])
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def compare(label, dataset_name, model_name, batch_size, train_subset, reps, root, shape, augment, device) -> None:
    suite = parse_suite(
        {
            "name": "bench",
            "datasets": [dataset_name],
            "models": [model_name],
            "methods": ["full"],
            "training": {"epochs": 1, "batch_size": batch_size, "lr": 0.01},
            "budget": {"train_subset": train_subset, "test_subset": 256},
        }
    )
    (run,) = expand(suite)
    data = load_tensors(dataset_name, root, device, train_subset, 256)
    ratios, hs, hands = [], [], []
    for r in range(reps + 1):  # the first pair warms up
        h = train_run(run.config, data_root=root, device=str(device))["epoch_seconds"]
        m = hand_epoch(model_name, data, batch_size, 0.01, 0, augment, shape, device)
        if r:
            ratios.append(h / m)
            hs.append(h)
            hands.append(m)
    print(
        f"{label:34s} harness {statistics.median(hs):7.2f} s  hand loop {statistics.median(hands):7.2f} s  "
        f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, {reps} pairs)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--vgg-batches", type=int, default=30)
    ap.add_argument("--mnist-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    mnist = "mnist" if (args.mnist_root / "MNIST" / "raw").is_dir() else "mnist_subset"
    compare(
        f"LeNet5 / {mnist} (full epoch)",
        mnist,
        "lenet5",
        128,
        None,
        args.reps,
        args.mnist_root,
        dict(in_channels=1, num_classes=10, image_size=28),
        augment=False,
        device=device,
    )
    register_cifar_shaped(64 * args.vgg_batches)
    compare(
        f"VGG16 / CIFAR-shaped ({args.vgg_batches} batches)",
        "cifar_shaped",
        "vgg16",
        64,
        None,
        args.reps,
        args.mnist_root,
        dict(in_channels=3, num_classes=10, image_size=32),
        augment=True,
        device=device,
    )


if __name__ == "__main__":
    main()
