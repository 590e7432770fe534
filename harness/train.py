"""Training one run: data on the device, the method's step in a plain loop, metrics at the end."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config import EpochRecord, Training, Validation
from harness.data import crop_flip, load_tensors
from harness.layers import parameter_summary
from harness.memory import PeakMemory, run_tensors
from harness.method import Method
from harness.model_file import model_bytes
from harness.models import create_model
from harness.optim import lr_factor, set_lr
from harness.registry import DATASETS, METHODS


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class Callbacks:
    """What the loop reports while it trains (progress displays and the store listen)."""

    def run_start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def step(self, n: int = 1) -> None: ...
    def epoch_end(self, row: dict[str, Any]) -> None: ...
    def model_file(self, data: bytes) -> None: ...  # the trained model's file (harness.model_file), to keep


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use device: auto or cpu")
    return torch.device(device)


def inference_flops(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    """FLOPs of one forward pass of one sample (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1, *shape), device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        correct += (out.argmax(1) == y[i : i + batch_size]).sum().item()
        loss += nn.functional.cross_entropy(out, y[i : i + batch_size], reduction="sum").item()
    model.train()
    return correct / len(x), loss / len(x)


def build(config: dict[str, Any], device: torch.device) -> tuple[Method, nn.Module, int]:
    """The method and its prepared model for a run config, plus the dense model's parameter count."""
    spec = DATASETS.get(config["dataset"])
    shape = dict(in_channels=spec.channels, num_classes=spec.num_classes, image_size=spec.image_size)
    torch.manual_seed(config["seed"])
    generator = torch.Generator().manual_seed(config["seed"])
    model = create_model(config["model"], **shape)
    full_params = sum(p.numel() for p in model.parameters())
    method: Method = METHODS.get(config["method"])(config["params"], config["initialization"])
    model = method.prepare(model, generator).to(device)
    return method, model, full_params


def train_run(
    config: dict[str, Any],
    data_root: Path | None = None,
    device: str = "auto",
    callbacks: Callbacks | None = None,
    download: bool = True,
    check_every: int = 25,
) -> dict[str, Any]:
    """Train one resolved run config; returns the run's metrics. Raises on failure or divergence."""
    cb = callbacks or Callbacks()
    dev = resolve_device(device)
    training = Training.model_validate(config["training"])
    budget = config.get("budget") or {}
    validation = Validation.model_validate(config.get("validation"))
    data = load_tensors(
        config["dataset"],
        data_root,
        dev,
        budget.get("train_subset"),
        budget.get("test_subset"),
        download=download,
        validation=validation,
    )
    method, model, full_params = build(config, dev)
    optimizer = method.make_optimizer(model, training)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
    augment = training.augmentation == "crop_flip" or (training.augmentation == "auto" and data.augment)
    gen = torch.Generator(device=dev).manual_seed(config["seed"])
    n, bs = len(data.train_x), training.batch_size
    steps = n // bs if n >= bs else 1  # drop the last partial batch (BatchNorm, equal steps)
    cb.run_start(training.epochs, steps)
    epochs: list[dict[str, Any]] = []
    with PeakMemory(dev, lambda: run_tensors(model, optimizer)) as mem:
        for epoch in range(training.epochs):
            lr = set_lr(
                optimizer,
                training.lr,
                lr_factor(
                    training.schedule,
                    epoch,
                    training.epochs,
                    training.warmup_epochs,
                    training.step_size,
                    training.gamma,
                ),
            )
            model.train()
            t0 = time.perf_counter()
            order = torch.randperm(n, device=dev, generator=gen)
            total = torch.zeros((), device=dev)
            for s in range(steps):
                with mem.step(s, steps):  # on CPU a few sampled steps are tracked (and timed apart)
                    idx = order[s * bs : (s + 1) * bs]
                    x = data.train_x[idx]
                    if augment:
                        x = crop_flip(x, gen)
                    total += method.train_step(model, optimizer, (x, data.train_y[idx]), loss_fn)
                if (s + 1) % check_every == 0 and not torch.isfinite(total):
                    raise DivergedError(_diverged(epoch, s, training))
                cb.step()
            loop = time.perf_counter() - t0
            method.end_epoch(model, optimizer, epoch)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = mem.epoch_seconds(time.perf_counter() - t0, loop, steps)
            train_loss = (total / steps).item()
            if not math.isfinite(train_loss):
                raise DivergedError(_diverged(epoch, steps - 1, training))
            with mem.excluded():
                acc, test_loss = evaluate(model, data.test_x, data.test_y, training.eval_batch_size)
                val_acc, val_loss = (
                    evaluate(model, data.val_x, data.val_y, training.eval_batch_size)
                    if data.val_x is not None and data.val_y is not None
                    else (None, None)
                )
            stats = [s.to_dict() for s in method.layer_stats(model)]
            row = EpochRecord(epoch, train_loss, acc, test_loss, seconds, lr, stats, val_acc, val_loss).to_dict()
            epochs.append(row)
            cb.epoch_end(row)
    layers = method.layer_stats(model)
    metrics: dict[str, Any] = {
        "final_acc": epochs[-1]["test_acc"],
        "best_acc": max(e["test_acc"] for e in epochs),
        **selected_epoch(epochs),
        "final_train_loss": epochs[-1]["train_loss"],
        "final_test_loss": epochs[-1]["test_loss"],
        "epoch_seconds": sum(e["seconds"] for e in epochs) / len(epochs),
        "train_seconds": sum(e["seconds"] for e in epochs),
        "epochs": len(epochs),
        "flops": inference_flops(model, tuple(data.train_x.shape[1:]), dev),
        "peak_memory_mb": mem.peak_mb,
        "device": str(dev),
        "train_size": n,
        "val_size": 0 if data.val_x is None else len(data.val_x),
        "test_size": len(data.test_x),
        "ranks": {s.name: s.ranks for s in layers if s.ranks is not None},
        **parameter_summary(model, layers, full_params),
    }
    saved = model_bytes(model, config)  # kept by the callbacks (the run's results directory), its size reported
    metrics["model_bytes"] = len(saved)
    cb.model_file(saved)
    return metrics


def selected_epoch(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """The epoch a run is judged by, chosen on validation alone: the first with the highest validation accuracy.

    Gives ``best_epoch`` (counted from 0, as stored), ``best_val_acc`` and ``test_acc_at_best_val``; nothing for a
    run without a validation split (it is judged by its final epoch; the test set never selects one)."""
    scored = [(e["val_acc"], -i) for i, e in enumerate(epochs) if e.get("val_acc") is not None]
    if not scored:
        return {}
    best = -max(scored)[1]
    return {
        "best_epoch": epochs[best]["epoch"],
        "best_val_acc": epochs[best]["val_acc"],
        "test_acc_at_best_val": epochs[best]["test_acc"],
        "final_val_acc": epochs[-1]["val_acc"],
    }


def _diverged(epoch: int, step: int, training: Training) -> str:
    return (
        f"training loss became NaN/inf in epoch {epoch + 1} by step {step + 1} "
        f"(lr {training.lr}); lower the learning rate or add warmup"
    )
