"""Random CIFAR-shaped images registered as a dataset (CIFAR-10 itself is not on every machine).

Shared by the epoch benchmarks; no benchmark lives here. Its sizes may change between calls: the dataset is
registered once under a name, and its loader reads the sizes set last.
"""

from __future__ import annotations

import numpy as np

from harness.data import dataset
from harness.registry import DATASETS

_SIZES: dict[str, tuple[int, int]] = {}


def register_random_cifar(name: str, train: int, test: int) -> str:
    """Register (once) or resize random uint8 CIFAR-shaped images under ``name``; returns ``name``."""
    _SIZES[name] = (train, test)
    if name in DATASETS.names():
        return name

    @dataset(
        name,
        channels=3,
        image_size=32,
        num_classes=10,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        augment=True,
        description="random CIFAR-shaped images (benchmarks/random_cifar.py)",
    )
    def load(root, download=True):
        rng = np.random.default_rng(0)
        n, m = _SIZES[name]
        return (
            rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, n),
            rng.integers(0, 256, (m, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, m),
        )

    return name
