"""Epoch time of every method in each precision: the harness's loop against a minimal hand loop, images per
second, and what the `cifar10` suite would cost.

For each model (VGG16, ResNet18) on CIFAR-shaped random data (3x32x32, 10 classes, random crop and flip), each
registered method (one setting each, the middle of `suites/cifar10.yaml`'s sweep) and each precision:

- harness: ``harness.train.train_run`` with ``training.precision`` (and ``channels_last``, ``compile``) set, timed
  by its own per-epoch clock (the training pass and the method's end of epoch, not evaluation);
- hand loop: the same prepared model (after the method's work before the loop: SNIP's and GraSP's masks, IMP's
  rounds, not timed), optimizer, batches and settings in a dozen lines (``torch.autocast``, a ``GradScaler`` for
  fp16); a method with its own ``train_step`` (DLRT, TDLRT, the fixed-rank methods) has it called from the hand
  loop, since its step is the algorithm.

Each side trains ``--epochs`` epochs (default 2; the first warms up: cuDNN's choices, compilation) and the last
is timed; the sides alternate (harness, hand, harness, hand ...) and medians are printed. Printed per row: both
epoch times, their ratio (harness / hand), the harness's training images per second and its speed-up over the
same method in fp32. Then, per precision, the projected hours of ``suites/cifar10.yaml``: for every run of a
measured model and method, epochs x (its training images at the measured rate x the passes a run trains (IMP:
its rounds and the final pass) + its validation and 10,000 test images at the measured evaluation rate; the
validation split, 10% by default, comes out of the 50,000).
DLRT/TDLRT are measured at their initial ranks (the cap), so their projection is an upper bound: their ranks
fall in the first epochs.

    python benchmarks/gpu_epoch.py --device cuda                      # VGG16 and ResNet18, every method
    python benchmarks/gpu_epoch.py --device cuda --precisions fp32,bf16 --methods full,tdlrt --batches 100
    python benchmarks/gpu_epoch.py --quick                            # the CPU check of seconds (CI)

On a CPU fp16 is refused (as by the harness); ``--quick`` runs fp32 and bf16 with tiny sizes: a check that the
script works, not a measurement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config import Validation
from harness.data import crop_flip
from harness.execution import batch_layout
from harness.method import Method
from harness.precision import precision_problem
from harness.registry import METHODS
from harness.suite import expand, load_suite, parse_suite
from harness.train import Callbacks, evaluate, prepare_run, train_run

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_SUITE = ROOT / "suites" / "cifar10.yaml"
CIFAR10_TRAIN, CIFAR10_TEST = 50_000, 10_000  # images per epoch of the real dataset
DATASET = "cifar_random"
#: One setting per method: the middle of suites/cifar10.yaml's sweep, at that grid's learning rate.
PRESETS: dict[str, tuple[dict[str, Any], float]] = {
    "full": ({}, 0.05),
    "dlrt": ({"tau": 0.06}, 0.05),
    "tdlrt": ({"tau": 0.06}, 0.05),
    "tucker": ({"compression": 0.9}, 0.02),
    "cp": ({"compression": 0.9}, 0.02),
    "tt": ({"compression": 0.9}, 0.02),
    "matrix": ({"compression": 0.9}, 0.02),
    "snip": ({"sparsity": 0.9}, 0.02),
    "grasp": ({"sparsity": 0.9}, 0.02),
    "imp": ({"sparsity": 0.9}, 0.02),
}


def register_random_cifar(train: int, test: int) -> None:
    """Random CIFAR-shaped images under the name ``cifar_random`` (registered once; sizes may change)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # imported here: asv imports every file in
    from random_cifar import register_random_cifar as register  # benchmarks/ as a module

    register(DATASET, train, test)


@dataclass(frozen=True)
class Settings:
    """What both loops share besides the model and method."""

    batch_size: int
    batches: int
    test_images: int
    epochs: int
    channels_last: bool | str
    compile: bool


def run_config(model: str, method: str, precision: str, s: Settings) -> dict[str, Any]:
    params, lr = PRESETS.get(method, ({}, 0.05))
    training = {
        "epochs": s.epochs,
        "batch_size": s.batch_size,
        "eval_batch_size": 500,
        "lr": lr,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "augmentation": "crop_flip",
        "precision": precision,
        "channels_last": s.channels_last,
        "compile": s.compile,
    }
    suite = parse_suite(
        {
            "name": "gpu_epoch",
            "datasets": [DATASET],
            "models": [model],
            "methods": [{"name": method, "params": params}],
            "training": training,
            "budget": {"train_subset": s.batch_size * s.batches, "test_subset": s.test_images},
            "validation": 0,  # every image trains: the epoch is the budget's batches exactly
        }
    )
    (run,) = expand(suite)
    return run.config


class _EpochClock(Callbacks):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.seconds.append(row["seconds"])


def harness_epoch(config: dict[str, Any], device: torch.device) -> tuple[float, float]:
    """Seconds of the last epoch of ``train_run``, by its own clock, and the passes of the schedule the run
    trained (1; IMP: its rounds and the final pass)."""
    clock = _EpochClock()
    metrics = train_run(config, device=str(device), callbacks=clock)
    return clock.seconds[-1], metrics["total_epochs"] / metrics["epochs"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_epoch(config: dict[str, Any], device: torch.device) -> tuple[float, float]:
    """Seconds of the last epoch of a minimal loop with the run's settings, and seconds per evaluated image."""
    run = prepare_run(config, None, str(device))  # the run's data, method, model, precision and layout
    method, model, data, training = run.method, run.model, run.data, run.training
    precision, channels_last = run.loop.precision, run.loop.channels_last
    method.before_training(model, run.session)  # masks, rounds (not timed)
    if training.compile:
        method.compile(model)
    opt = method.make_optimizer(model, training)
    own_step = type(method).train_step is not Method.train_step
    loss_fn = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type) if training.precision == "fp16" else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(training.precision)
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    n, bs = len(data.train_x), training.batch_size
    seconds = 0.0
    for epoch in range(training.epochs):
        _sync(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, device=device, generator=gen)
        for s in range(n // bs):
            idx = order[s * bs : (s + 1) * bs]
            x = batch_layout(crop_flip(data.train_x[idx], gen), channels_last)
            y = data.train_y[idx]
            if own_step:
                with precision.autocast():
                    method.train_step(model, opt, (x, y), loss_fn)
                continue
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(model(x), y)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        method.end_epoch(model, opt, epoch)
        _sync(device)
        seconds = time.perf_counter() - t0
    _sync(device)
    t0 = time.perf_counter()
    evaluate(model, data.test_x, data.test_y, training.eval_batch_size, precision, channels_last)
    _sync(device)
    return seconds, (time.perf_counter() - t0) / len(data.test_x)


@dataclass
class Row:
    model: str
    method: str
    precision: str
    harness: float  # seconds of one epoch (median over reps)
    hand: float
    ratio: float
    images: int  # training images per epoch
    eval_seconds_per_image: float
    passes: float  # passes of the whole schedule a run trains (IMP: rounds + 1)

    @property
    def images_per_second(self) -> float:
        return self.images / self.harness


def measure(model: str, method: str, precision: str, s: Settings, reps: int, device: torch.device) -> Row:
    config = run_config(model, method, precision, s)
    hs, ms, ratios, evals = [], [], [], []
    passes = 1.0
    for _ in range(reps):
        h, passes = harness_epoch(config, device)
        m, e = hand_epoch(config, device)
        hs.append(h)
        ms.append(m)
        ratios.append(h / m)
        evals.append(e)
    med = statistics.median
    return Row(model, method, precision, med(hs), med(ms), med(ratios), s.batch_size * s.batches, med(evals), passes)


def projected_hours(rows: list[Row], precision: str, suite_path: Path = CIFAR10_SUITE) -> tuple[float, int, int]:
    """Hours of the suite's runs whose model and method were measured in ``precision``; the runs counted and all.
    Each run: epochs x (its training images at the harness's measured rate + its validation and test images at
    the evaluation rate), its validation split held out of CIFAR-10's 50,000 training images."""
    rate = {(r.model, r.method): r for r in rows if r.precision == precision}
    runs = expand(load_suite(suite_path))
    seconds, counted = 0.0, 0
    for run in runs:
        r = rate.get((run.config["model"], run.config["method"]))
        if r is None:
            continue
        epochs = run.config["training"]["epochs"]
        val = Validation.model_validate(run.config.get("validation")).count(CIFAR10_TRAIN)
        train, evaluated = CIFAR10_TRAIN - val, CIFAR10_TEST + val
        seconds += epochs * (r.passes * train / r.images_per_second + evaluated * r.eval_seconds_per_image)
        counted += 1
    return seconds / 3600, counted, len(runs)


def print_table(rows: list[Row]) -> None:
    fp32 = {(r.model, r.method): r.harness for r in rows if r.precision == "fp32"}
    print(
        f"{'model':9s} {'method':8s} {'prec':5s} {'harness s':>10s} {'hand s':>9s} {'ratio':>6s} "
        f"{'img/s':>9s} {'vs fp32':>8s}"
    )
    for r in rows:
        base = fp32.get((r.model, r.method))
        speedup = f"{base / r.harness:7.2f}x" if base and r.precision != "fp32" else f"{'':8s}"
        print(
            f"{r.model:9s} {r.method:8s} {r.precision:5s} {r.harness:10.3f} {r.hand:9.3f} {r.ratio:6.3f} "
            f"{r.images_per_second:9.1f} {speedup}"
        )


def names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--models", default="vgg16,resnet18")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    ap.add_argument("--precisions", default=None, help="default: fp32,bf16,fp16 on CUDA, fp32,bf16 on a CPU")
    ap.add_argument("--batches", type=int, default=50, help="training batches per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per side; the last is timed")
    ap.add_argument("--reps", type=int, default=1, help="alternating harness / hand pairs; medians printed")
    ap.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward (both loops)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes on the CPU: a check that the script runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.device, args.batches, args.batch_size, args.test_images, args.epochs = "cpu", 1, 4, 8, 1
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    device = torch.device(args.device)
    default_precisions = "fp32,bf16,fp16" if device.type == "cuda" else "fp32,bf16"
    precisions = names(args.precisions or default_precisions)
    for p in precisions:
        problem = precision_problem(p, device.type)
        if problem:
            sys.exit(f"--precisions: {problem}")
    methods = names(args.methods) if args.methods else METHODS.names()
    channels_last: bool | str = {"true": True, "false": False}.get(args.channels_last, "auto")
    s = Settings(args.batch_size, args.batches, args.test_images, args.epochs, channels_last, args.compile)
    register_random_cifar(s.batch_size * s.batches, s.test_images)
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}"
        f", {torch.get_num_threads()} threads; {s.batches} batches of {s.batch_size} per epoch, last of {s.epochs} "
        f"epochs timed, {args.reps} rep(s); channels_last {args.channels_last}, compile {args.compile}"
    )
    rows = []
    for model in names(args.models):
        for method in methods:
            for precision in precisions:
                rows.append(measure(model, method, precision, s, args.reps, device))
    print_table(rows)
    for precision in precisions:
        hours, counted, total = projected_hours(rows, precision)
        print(
            f"suites/cifar10.yaml in {precision}: {hours:.1f} h on this device for the {counted} of its {total} runs "
            f"whose model and method were measured (DLRT/TDLRT at their initial ranks: an upper bound)"
        )
    return rows


if __name__ == "__main__":
    main()
