"""Architectures used in the low-rank training literature, registered by name.

Every builder takes ``in_channels``, ``num_classes`` and ``image_size`` so one architecture serves
several datasets; ``create_model(name, **kwargs)`` is the one entry point.

* ``lenet5``: the LeNet5 of the DLRT paper (conv 20 and 50 channels 5x5, fc 500, fc classes).
* ``alexnet``: CIFAR AlexNet (five 3x3 convs 64-192-384-256-256 with BatchNorm, fc 4096-4096).
* ``vgg16``: CIFAR VGG16 (13 3x3 convs with BatchNorm, classifier fc 512-512-classes).
* ``resnet18``: CIFAR ResNet18 (3x3 stem, no max-pool, four stages of two basic blocks).
* ``vit``: a small vision transformer for 28x28 and 32x32 images (:mod:`harness.vit`).
* ``torchvision.<arch>``: torchvision's classification architectures (:mod:`harness.torchvision_models`).

Other packages add models through the entry-point group ``harness.models`` (docs/plugins.md).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from harness.registry import MODELS, register_model


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture by name."""
    return MODELS.get(name)(**kwargs)


def model_args(dataset: str) -> dict[str, int]:
    """The builder arguments a dataset gives every model: ``in_channels``, ``num_classes``, ``image_size``."""
    from harness.registry import DATASETS

    spec = DATASETS.get(dataset)
    return {"in_channels": spec.channels, "num_classes": spec.num_classes, "image_size": spec.image_size}


@register_model("lenet5", "LeNet5 (DLRT paper variant): conv20-conv50 5x5, fc500, for 28x28 inputs")
def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    s = ((image_size - 4) // 2 - 4) // 2
    if s < 1:
        raise ValueError(f"lenet5 needs images of at least 16x16 pixels, got {image_size}")
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * s * s, 500),
        nn.ReLU(),
        nn.Linear(500, num_classes),
    )


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _needs(name: str, image_size: int, factor: int) -> None:
    if image_size < factor or image_size % factor:
        raise ValueError(
            f"{name} needs image sizes divisible by {factor} (e.g. 32x32), got {image_size}; "
            f"use a padded dataset such as fashion_mnist32"
        )


@register_model("alexnet", "AlexNet, CIFAR variant (5 convs with BatchNorm, fc 4096-4096), 32x32 inputs")
def alexnet(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    _needs("alexnet", image_size, 8)
    s = image_size // 8
    return nn.Sequential(
        *_conv_bn(in_channels, 64),
        nn.MaxPool2d(2),
        *_conv_bn(64, 192),
        nn.MaxPool2d(2),
        *_conv_bn(192, 384),
        *_conv_bn(384, 256),
        *_conv_bn(256, 256),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(256 * s * s, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@register_model("vgg16", "VGG16, CIFAR variant (13 convs with BatchNorm, fc 512-512-classes), 32x32 inputs")
def vgg16(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    _needs("vgg16", image_size, 32)
    layers: list[nn.Module] = []
    c = in_channels
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += _conv_bn(c, int(v))
            c = int(v)
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Linear(512, num_classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, 64))
        blocks, c = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c, cout, stride), BasicBlock(cout, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


@register_model("resnet18", "ResNet18, CIFAR variant (3x3 stem, no max-pool), 32x32 inputs")
def resnet18(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    _needs("resnet18", image_size, 8)
    return ResNet18(in_channels, num_classes)


# torchvision's architectures (``torchvision.resnet18``) and the vision transformer register on import
from harness import torchvision_models as _torchvision_models  # noqa: E402, F401
from harness import vit as _vit  # noqa: E402, F401
