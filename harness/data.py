"""Datasets: read from their standard files once, decoded into tensors that live on the device.

Data root: ``--data-root`` on the command line, else the environment variable ``HARNESS_DATA``, else
``~/.cache/harness/data``. Layouts under the root are torchvision's:

* MNIST: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
* Fashion-MNIST: ``FashionMNIST/raw/...`` (same names), or Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist/``)
* CIFAR-10: ``cifar-10-batches-py/{data_batch_1..5,test_batch}``

``mnist_subset`` is a real MNIST subset (10,000 train / 2,000 test images) shipped in the package.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from harness.registry import DATASETS


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing (and could not be downloaded)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its image shape and class count, and a loader of numpy arrays."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # random crop + flip by default ("augmentation: auto")
    load: Callable[[Path, bool], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    description: str = ""
    pad_to: int | None = None  # zero-pad images to this size (e.g. 28 -> 32 for CIFAR models)


@dataclass
class TensorData:
    """A dataset as normalized float tensors on one device."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: bool


def default_data_root() -> Path:
    env = os.environ.get("HARNESS_DATA")
    return Path(env) if env else Path.home() / ".cache" / "harness" / "data"


def dataset(
    name: str,
    *,
    channels: int,
    image_size: int,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool = False,
    description: str = "",
    pad_to: int | None = None,
):
    """Decorator registering a loader ``load(root, download) -> (train_x, train_y, test_x, test_y)``."""

    def decorate(load):
        DATASETS.add(
            name,
            DatasetSpec(name, channels, image_size, num_classes, mean, std, augment, load, description, pad_to),
            description,
        )
        return load

    return decorate


# -- readers ------------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_idx(dirs: list[Path]) -> list[Path] | None:
    for d in dirs:
        found = []
        for stem in _IDX_FILES:
            hit = next((d / (stem + ext) for ext in ("", ".gz") if (d / (stem + ext)).is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    return None


def _missing(
    name: str, looked: list[Path], files: tuple[str, ...], how: str, download_error: str | None
) -> DatasetNotFoundError:
    where = "\n".join(f"  - {p}" for p in looked)
    failed = f"\nDownload failed: {download_error}" if download_error else ""
    return DatasetNotFoundError(
        f"dataset {name!r}: files not found. Looked for {', '.join(files)} (or .gz) in:\n{where}\n"
        f"How to provide them: {how}\nSet the data root with --data-root DIR or HARNESS_DATA=DIR.{failed}"
    )


def _try_download(fn: Callable[[], object]) -> str | None:
    try:
        fn()
        return None
    except Exception as exc:  # no network, proxy, checksum: all reported the same way
        return f"{type(exc).__name__}: {exc}"


def _load_idx_dataset(name: str, dirs: list[Path], root: Path, download: bool, tv_class: str, how: str):
    files = _find_idx(dirs)
    error = None
    if files is None and download:
        import torchvision.datasets as tvd

        error = _try_download(lambda: getattr(tvd, tv_class)(str(root), download=True))
        files = _find_idx(dirs)
    if files is None:
        raise _missing(name, dirs, _IDX_FILES, how, error)
    x, y, xt, yt = (_read_idx(p) for p in files)
    return x[:, None], y.astype(np.int64), xt[:, None], yt.astype(np.int64)


@dataset(
    "mnist",
    channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.1307,),
    std=(0.3081,),
    description="MNIST handwritten digits, 60k/10k, 28x28 grey (standard idx files)",
)
def load_mnist(root: Path, download: bool = True):
    return _load_idx_dataset(
        "mnist",
        [root / "MNIST" / "raw"],
        root,
        download,
        "MNIST",
        "copy the four MNIST idx files into <root>/MNIST/raw/ (torchvision layout).",
    )


FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@dataset(
    "fashion_mnist",
    channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    description="Fashion-MNIST clothing images, 60k/10k, 28x28 grey",
)
def load_fashion_mnist(root: Path, download: bool = True):
    return _load_idx_dataset(
        "fashion_mnist",
        [root / "FashionMNIST" / "raw", FASHION_DEBIAN],
        root,
        download,
        "FashionMNIST",
        "on Debian/Ubuntu `apt-get install dataset-fashion-mnist`, or copy the four idx files "
        "into <root>/FashionMNIST/raw/.",
    )


@dataset(
    "fashion_mnist32",
    channels=1,
    image_size=32,
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    pad_to=32,
    description="Fashion-MNIST zero-padded to 32x32 (for CIFAR-style models)",
)
def load_fashion_mnist32(root: Path, download: bool = True):
    return load_fashion_mnist(root, download)


@dataset(
    "mnist_subset",
    channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.1307,),
    std=(0.3081,),
    description="real MNIST subset shipped with harness: 10k train / 2k test (quickstart, tests)",
)
def load_mnist_subset(root: Path, download: bool = True):
    with resources.files("harness").joinpath("_data/mnist_subset.npz").open("rb") as fh:
        z = np.load(io.BytesIO(fh.read()))
        return (
            z["train_images"][:, None],
            z["train_labels"].astype(np.int64),
            z["test_images"][:, None],
            z["test_labels"].astype(np.int64),
        )


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: they hold dicts, lists, bytes and numpy arrays only."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels from one ``cifar-10-batches-py`` file, safely."""
    with open(path, "rb") as fh:
        batch = _ArraysOnlyUnpickler(fh, encoding="bytes").load()
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(batch["labels"], dtype=np.int64)


CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@dataset(
    "cifar10",
    channels=3,
    image_size=32,
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    augment=True,
    description="CIFAR-10, 50k/10k 32x32 colour (python batches; bring your own copy)",
)
def load_cifar10(root: Path, download: bool = True):
    folder = root / "cifar-10-batches-py"
    error = None
    if not all((folder / f).is_file() for f in CIFAR_FILES) and download:
        import torchvision.datasets as tvd

        error = _try_download(lambda: tvd.CIFAR10(str(root), download=True))
    missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise _missing(
            "cifar10",
            [folder],
            CIFAR_FILES,
            "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
            "unpack it into <root> (giving <root>/cifar-10-batches-py/).",
            error,
        )
    parts = [read_cifar_batch(folder / f) for f in CIFAR_FILES[:5]]
    xt, yt = read_cifar_batch(folder / "test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt


# -- tensors on the device ----------------------------------------------------------------------------
def subset_indices(n: int, k: int | None) -> np.ndarray:
    """The first ``k`` of a fixed (seed 0) permutation: the same subset for every run and seed."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:k])


def _to_tensor(images: np.ndarray, spec: DatasetSpec, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32).div_(255.0)
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    x = (x - mean) / std
    if spec.pad_to and spec.pad_to > x.shape[-1]:
        p = spec.pad_to - x.shape[-1]
        x = torch.nn.functional.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2))
    return x.contiguous()


_CACHE: dict[tuple, TensorData] = {}


def load_tensors(
    name: str,
    root: Path | None = None,
    device: torch.device | str = "cpu",
    train_subset: int | None = None,
    test_subset: int | None = None,
    download: bool = True,
) -> TensorData:
    """Load a registered dataset as normalized tensors on ``device`` (cached per process)."""
    spec: DatasetSpec = DATASETS.get(name)
    root = Path(root) if root is not None else default_data_root()
    device = torch.device(device)
    key = (name, str(root), str(device), train_subset, test_subset)
    if key not in _CACHE:
        x, y, xt, yt = spec.load(root, download)
        tr, te = subset_indices(len(x), train_subset), subset_indices(len(xt), test_subset)
        _CACHE[key] = TensorData(
            name,
            _to_tensor(x[tr], spec, device),
            torch.from_numpy(y[tr]).to(device),
            _to_tensor(xt[te], spec, device),
            torch.from_numpy(yt[te]).to(device),
            spec.num_classes,
            spec.augment,
        )
    return _CACHE[key]


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Batched random crop (zero padding ``pad``) and horizontal flip, on the batch's device."""
    b, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (b, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (b, 1, w)
    out = xp[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # (b, h, w, c)
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out).contiguous()
