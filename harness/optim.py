"""Optimizers and learning-rate schedules built from a suite's training settings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


def build_optimizer(params: Iterable[Any], training: Any) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW, as ``training.optimizer`` says."""
    name = training.optimizer
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=training.lr,
            momentum=training.momentum,
            nesterov=training.nesterov and training.momentum > 0,
            weight_decay=training.weight_decay,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=training.lr, weight_decay=training.weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected sgd, adam or adamw")


def lr_factor(
    schedule: str, epoch: int, epochs: int, warmup: int = 0, step_size: int = 30, gamma: float = 0.1
) -> float:
    """Multiplier of the base learning rate for (0-based) ``epoch``."""
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(epochs - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / span))
    if schedule == "step":
        return gamma ** ((epoch - warmup) // step_size)
    raise ValueError(f"unknown schedule {schedule!r}; expected constant, cosine or step")


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every parameter group's learning rate to ``base_lr * factor`` (groups may scale it)."""
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
