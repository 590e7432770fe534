"""Datasets: read from their standard files once, decoded into tensors that live on the device.

Data root: ``--data-root`` on the command line, else the environment variable ``HARNESS_DATA``, else
``~/.cache/harness/data``. Layouts under the root are torchvision's:

* MNIST: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
* Fashion-MNIST: ``FashionMNIST/raw/...`` (same names), or Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist/``)
* CIFAR-10: ``cifar-10-batches-py/{data_batch_1..5,test_batch}``

``mnist_subset`` is a real MNIST subset (10,000 train / 2,000 test images) shipped in the package.

A dataset read from files declares them (:class:`DataFiles`: folders, names, where they can be had), so that
``harness run`` checks every dataset of a grid once, before training anything (:func:`missing_datasets`).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from harness.config import Validation
from harness.registry import DATASETS


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing (and could not be downloaded)."""


@dataclass(frozen=True)
class DataFiles:
    """The files a dataset is read from: enough to check that they are there (without reading them), to say
    where they can be had, and to download them through torchvision where it can.

    ``folders`` are tried in order, each relative to the data root (an absolute one is taken as it is); the first
    holding every name of ``names`` (or, with ``gz``, its ``.gz``) is the one read."""

    folders: tuple[str | Path, ...]
    names: tuple[str, ...]
    how: str  # where the files can be had and where they go; ``<root>`` stands for the data root
    gz: bool = False
    torchvision: str | None = None  # the torchvision.datasets class that downloads them into the data root

    def looked(self, root: Path) -> list[Path]:
        """The folders searched under ``root``, in order."""
        return [root / f for f in self.folders]

    def find(self, root: Path) -> list[Path] | None:
        """The files (in the order of ``names``) in the first folder that holds all of them, else None."""
        exts = ("", ".gz") if self.gz else ("",)
        for folder in self.looked(root):
            found = [next((p for p in (folder / (n + e) for e in exts) if p.is_file()), None) for n in self.names]
            if all(found):
                return found  # type: ignore[return-value]
        return None

    def fetch(self, root: Path) -> str | None:
        """Try torchvision's download into ``root`` (where it has one); the error as text, else None."""
        cls = self.torchvision
        if cls is None:
            return None
        import torchvision.datasets as tvd

        return _try_download(lambda: getattr(tvd, cls)(str(root), download=True))

    def missing(self, name: str, root: Path, download_error: str | None = None) -> DatasetNotFoundError:
        """The error naming the folders looked in, the files and where they can be had."""
        where = "\n".join(f"  - {p}" for p in self.looked(root))
        failed = f"\nDownload failed: {download_error}" if download_error else ""
        return DatasetNotFoundError(
            f"dataset {name!r}: files not found. Looked for {', '.join(self.names)}{' (or .gz)' if self.gz else ''}"
            f" in:\n{where}\nHow to provide them: {self.how.replace('<root>', str(root))}\n"
            f"Set the data root with --data-root DIR or HARNESS_DATA=DIR.{failed}"
        )

    def require(self, name: str, root: Path, download: bool) -> list[Path]:
        """The files, downloaded first when missing and ``download``; raises :class:`DatasetNotFoundError`."""
        files = self.find(root)
        error = None
        if files is None and download:
            error = self.fetch(root)
            files = self.find(root)
        if files is None:
            raise self.missing(name, root, error)
        return files


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
    files: DataFiles | None = None  # None: no files to provide (shipped with harness, or the loader's own affair)


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
    val_x: torch.Tensor | None = None  # None: no validation split
    val_y: torch.Tensor | None = None


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
    files: DataFiles | None = None,
):
    """Decorator registering a loader ``load(root, download) -> (train_x, train_y, test_x, test_y)``; ``files``
    lets ``harness run`` check that the dataset's files are there before training anything.

    The loader returns numpy arrays: images ``(N, channels, H, W)`` with values on the 0-255 scale (uint8, or
    any numeric type; divided by 255, then normalized by ``mean``/``std``), ``H = W = image_size`` (or smaller
    with ``pad_to = image_size``: zero-padded), and integer labels ``(N,)`` in ``[0, num_classes)``; the test
    split likewise. ``harness.register_dataset`` is this decorator; the loader keeps its spec as
    ``load.dataset_spec`` (what a ``harness.datasets`` entry point naming it registers)."""

    def decorate(load):
        spec = DatasetSpec(
            name, channels, image_size, num_classes, mean, std, augment, load, description, pad_to, files
        )
        DATASETS.add(name, spec, description)
        load.dataset_spec = spec
        return load

    return decorate


register_dataset = dataset


def check_arrays(spec: DatasetSpec, arrays: tuple) -> None:
    """Raise ``ValueError`` naming what is wrong when a loader's arrays break the contract of :func:`dataset`."""
    where = f"dataset {spec.name!r}: its loader"
    if not isinstance(arrays, tuple | list) or len(arrays) != 4:
        raise ValueError(f"{where} must return (train_x, train_y, test_x, test_y), got {type(arrays).__name__}")
    size = spec.pad_to or spec.image_size
    for split, x, y in (("train", arrays[0], arrays[1]), ("test", arrays[2], arrays[3])):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 4 or x.shape[1] != spec.channels or x.shape[2] != x.shape[3] or not 1 <= x.shape[2] <= size:
            want = f"(N, {spec.channels}, {spec.image_size}, {spec.image_size})"
            raise ValueError(f"{where} returned {split} images of shape {x.shape}; expected {want}")
        if spec.pad_to is None and x.shape[2] != spec.image_size:
            raise ValueError(
                f"{where} returned {split} images of {x.shape[2]}x{x.shape[3]}; the spec says "
                f"{spec.image_size}x{spec.image_size} (pad_to zero-pads smaller ones)"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{where} returned {split} images of type {x.dtype}; expected numbers on the 0-255 scale")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{where} returned {split} labels of shape {y.shape} and type {y.dtype}; expected {len(x)} integers"
            )
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ValueError(
                f"{where} returned {split} labels from {y.min()} to {y.max()}; expected 0..{spec.num_classes - 1}"
            )


# -- readers ------------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _try_download(fn: Callable[[], object]) -> str | None:
    try:
        fn()
        return None
    except Exception as exc:  # no network, proxy, checksum: all reported the same way
        return f"{type(exc).__name__}: {exc}"


def _load_idx_dataset(name: str, files: DataFiles, root: Path, download: bool):
    x, y, xt, yt = (_read_idx(p) for p in files.require(name, root, download))
    return x[:, None], y.astype(np.int64), xt[:, None], yt.astype(np.int64)


MNIST_FILES = DataFiles(
    ("MNIST/raw",),
    _IDX_FILES,
    "download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
    "and t10k-labels-idx1-ubyte.gz from https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror of "
    "http://yann.lecun.com/exdb/mnist/) into <root>/MNIST/raw/ (gzipped or not; the torchvision layout).",
    gz=True,
    torchvision="MNIST",
)
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = DataFiles(
    ("FashionMNIST/raw", FASHION_DEBIAN),
    _IDX_FILES,
    "on Debian/Ubuntu `apt-get install dataset-fashion-mnist`, or download the four idx files (.gz) from "
    "https://github.com/zalandoresearch/fashion-mnist into <root>/FashionMNIST/raw/.",
    gz=True,
    torchvision="FashionMNIST",
)


@dataset(
    "mnist",
    channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.1307,),
    std=(0.3081,),
    description="MNIST handwritten digits, 60k/10k, 28x28 grey (standard idx files)",
    files=MNIST_FILES,
)
def load_mnist(root: Path, download: bool = True):
    return _load_idx_dataset("mnist", MNIST_FILES, root, download)


@dataset(
    "fashion_mnist",
    channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    description="Fashion-MNIST clothing images, 60k/10k, 28x28 grey",
    files=FASHION_FILES,
)
def load_fashion_mnist(root: Path, download: bool = True):
    return _load_idx_dataset("fashion_mnist", FASHION_FILES, root, download)


@dataset(
    "fashion_mnist32",
    channels=1,
    image_size=32,
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    pad_to=32,
    description="Fashion-MNIST zero-padded to 32x32 (for CIFAR-style models)",
    files=FASHION_FILES,
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
CIFAR10_FILES = DataFiles(
    ("cifar-10-batches-py",),
    CIFAR_FILES,
    "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
    "unpack it into <root> (giving <root>/cifar-10-batches-py/).",
    torchvision="CIFAR10",
)


@dataset(
    "cifar10",
    channels=3,
    image_size=32,
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    augment=True,
    description="CIFAR-10, 50k/10k 32x32 colour (python batches; bring your own copy)",
    files=CIFAR10_FILES,
)
def load_cifar10(root: Path, download: bool = True):
    *train, test = CIFAR10_FILES.require("cifar10", root, download)
    parts = [read_cifar_batch(f) for f in train]
    xt, yt = read_cifar_batch(test)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt


def missing_datasets(names: Iterable[str], root: Path | None = None, download: bool = False) -> list[str]:
    """One message per dataset of ``names`` whose files are not under the data root (after one download try
    each when ``download``), without reading them. Embedded datasets, and those that declare no files, pass."""
    root = Path(root) if root is not None else default_data_root()
    problems: dict[DataFiles, str] = {}  # datasets sharing their files (fashion_mnist, fashion_mnist32) are told once
    for name in dict.fromkeys(names):
        files = DATASETS.get(name).files
        if files is None or files in problems:
            continue
        try:
            files.require(name, root, download)
        except DatasetNotFoundError as exc:
            problems[files] = str(exc).rstrip()
    return list(problems.values())


# -- tensors on the device ----------------------------------------------------------------------------
def validation_split(n: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices of ``n`` training images: ``count`` of them, drawn by a permutation seeded
    with ``seed`` alone (not the run's seed), are held out. Both sorted, disjoint, together all ``n``."""
    if not 0 <= count < n:
        raise ValueError(f"a validation split of {count} images leaves none of the {n} training images to train on")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[count:]), np.sort(order[:count])


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
    validation: Validation | None = None,
) -> TensorData:
    """Load a registered dataset as normalized tensors on ``device`` (cached per process).

    With a ``validation`` split, its images are held out of the training images first (:func:`validation_split`);
    ``train_subset`` then draws from the rest, so a budget never changes which images validate."""
    spec: DatasetSpec = DATASETS.get(name)
    root = Path(root) if root is not None else default_data_root()
    device = torch.device(device)
    held = validation if validation is not None and validation.size > 0 else None
    split = (held.size, held.seed) if held else None
    key = (name, str(root), str(device), train_subset, test_subset, split)
    if key not in _CACHE:
        arrays = spec.load(root, download)
        check_arrays(spec, arrays)
        x, y, xt, yt = (np.asarray(a) for a in arrays)
        y, yt = y.astype(np.int64, copy=False), yt.astype(np.int64, copy=False)
        rest, val = validation_split(len(x), held.count(len(x)), held.seed) if held else (np.arange(len(x)), None)
        tr, te = rest[subset_indices(len(rest), train_subset)], subset_indices(len(xt), test_subset)
        data = TensorData(
            name,
            _to_tensor(x[tr], spec, device),
            torch.from_numpy(y[tr]).to(device),
            _to_tensor(xt[te], spec, device),
            torch.from_numpy(yt[te]).to(device),
            spec.num_classes,
            spec.augment,
        )
        if val is not None:
            data.val_x, data.val_y = _to_tensor(x[val], spec, device), torch.from_numpy(y[val]).to(device)
        _CACHE[key] = data
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
