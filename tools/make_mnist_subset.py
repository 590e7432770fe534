"""Rebuild ``harness/_data/mnist_subset.npz`` from the real MNIST files.

The shipped subset holds 10,000 training and 2,000 test images drawn without replacement by
``numpy.random.default_rng(0)`` from the standard MNIST files (indices sorted).

Usage: python tools/make_mnist_subset.py <dir holding the four uncompressed idx files>
"""

import sys
from pathlib import Path

import numpy as np


def _read(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8, offset=offset)


def main(raw: Path, out: Path) -> None:
    x = _read(raw / "train-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    y = _read(raw / "train-labels-idx1-ubyte", 8)
    xt = _read(raw / "t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    yt = _read(raw / "t10k-labels-idx1-ubyte", 8)
    rng = np.random.default_rng(0)
    tr = np.sort(rng.choice(len(x), 10000, replace=False))
    te = np.sort(rng.choice(len(xt), 2000, replace=False))
    np.savez_compressed(out, train_images=x[tr], train_labels=y[tr], test_images=xt[te], test_labels=yt[te])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parents[1] / "harness" / "_data" / "mnist_subset.npz")
