"""How a run's model executes, apart from its arithmetic (:mod:`harness.precision`): the channels-last memory
layout (``training.channels_last``) and running compiled forwards eagerly where they must (counting FLOPs).
Compilation itself is the method's (``Method.compile``): only it knows whether its shapes stay fixed."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn


def is_convolutional(model: nn.Module) -> bool:
    """Whether the (dense) model holds a 2-d convolution."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def use_channels_last(setting: bool | str, device: torch.device, convolutional: bool) -> bool:
    """``training.channels_last`` resolved: ``auto`` is on for convolutional models on CUDA only (where cuDNN's
    NHWC kernels are faster, above all in reduced precision); ``true`` and ``false`` as said."""
    if setting == "auto":
        return convolutional and device.type == "cuda"
    return bool(setting)


def to_channels_last(model: nn.Module) -> nn.Module:
    """The model's 4-d parameters and buffers in channels-last layout (in place: the same parameter objects)."""
    return model.to(memory_format=torch.channels_last)


def batch_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A batch of images in channels-last layout when asked (a 4-d tensor), else as it is."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def eager() -> Any:
    """A region where compiled forwards run eagerly (e.g. counting FLOPs with a dispatch mode)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()
