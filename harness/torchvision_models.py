"""Torchvision's classification architectures as models named ``torchvision.<arch>`` (``torchvision.resnet18``).

Each is built by ``torchvision.models.get_model(arch, weights=None, num_classes=...)``: no pretrained weights,
so nothing is downloaded, and the classifier sized to the dataset's classes. Where the dataset's images have
other than 3 channels (MNIST, Fashion-MNIST: 1) the network's first convolution, the first ``nn.Conv2d`` in
module order, is replaced by a freshly initialized one that takes that many channels and keeps its output
channels, kernel, stride, padding, dilation and bias. Vision transformers (``vit_*``) are told the image size;
GoogLeNet and Inception v3 are built without their auxiliary classifiers (one output, as every model gives).

Whether an architecture can take a dataset's image size is found by pushing one batch through it when a suite
is read (:func:`harness.suite.parse_suite`): AlexNet on 32x32 images, for example, is refused there, exit 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from harness.registry import MODELS, Entry, Namespace

PREFIX = "torchvision."


@functools.cache
def architectures() -> list[str]:
    """The names of torchvision's classification architectures (``torchvision.models``, not its detection,
    segmentation or video models)."""
    from torchvision import models

    return list(models.list_models(module=models))


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the first ``nn.Conv2d`` of ``model`` by a new one taking ``in_channels`` channels (its other settings
    kept, its weights PyTorch's default initialization); raise ``ValueError`` where the model has none."""
    from harness.toolkit import replace_module

    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None or name is None:
        raise ValueError(f"cannot adapt the model to {in_channels}-channel images: it has no nn.Conv2d")
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ValueError(
            f"cannot adapt the first convolution {name!r} (groups={conv.groups}) to {in_channels} channels"
        )
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    replace_module(model, name, new)


def build(arch: str, in_channels: int = 3, num_classes: int = 10, image_size: int = 224) -> nn.Module:
    """torchvision's ``arch`` with no pretrained weights, ``num_classes`` outputs and ``in_channels`` inputs."""
    from torchvision import models

    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if arch.startswith("vit_"):
        kwargs["image_size"] = image_size
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    model = models.get_model(arch, **kwargs)
    adapt_input_channels(model, in_channels)
    return model


def _builder(arch: str) -> Callable[..., nn.Module]:
    def builder(in_channels: int = 3, num_classes: int = 10, image_size: int = 224) -> nn.Module:
        return build(arch, in_channels, num_classes, image_size)

    builder.__name__ = builder.__qualname__ = f"torchvision_{arch}"
    builder.__doc__ = (
        f"torchvision.models.{arch} with weights=None, num_classes from the dataset, and its first conv taking the "
        "dataset's channels (see harness.torchvision_models)."
    )
    return builder


def _entry(arch: str) -> Entry[Callable[..., Any]]:
    description = f"torchvision's {arch} (no pretrained weights; classes and input channels from the dataset)"
    return Entry(PREFIX + arch, _builder(arch), description)


NAMESPACE: Namespace[Callable[..., Any]] = Namespace(
    PREFIX,
    "torchvision architecture",
    "any classification architecture of torchvision.models, e.g. torchvision.resnet18 (no pretrained weights)",
    architectures,
    _entry,
)
MODELS.add_namespace(NAMESPACE)
