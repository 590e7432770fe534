"""Datasets: real MNIST files, CIFAR-10 batch format read safely, clear errors, batched augmentation."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness.data import (
    FASHION_DEBIAN,
    FASHION_FILES,
    DatasetNotFoundError,
    crop_flip,
    load_cifar10,
    load_mnist,
    load_tensors,
    missing_datasets,
    read_cifar_batch,
    subset_indices,
)
from harness.registry import DATASETS, Entry
from tests.conftest import MNIST_FILES, ROOT, SHARED_DATA, cli, require_real_mnist, status_counts, tiny_suite


def write_cifar(root, n=20):
    """Files in the exact cifar-10-batches-py format (pickled dicts with byte keys)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    return folder


def test_cifar_files_load_in_order(tmp_path):
    folder = write_cifar(tmp_path)
    x, y, xt, yt = load_cifar10(tmp_path, download=False)
    assert x.shape == (100, 3, 32, 32) and xt.shape == (20, 3, 32, 32) and y.dtype == np.int64
    first, labels = read_cifar_batch(folder / "data_batch_1")
    with open(folder / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert np.array_equal(first.reshape(20, -1), raw[b"data"]) and list(labels) == raw[b"labels"]
    # channel-first layout: the first 1024 bytes of a row are the red plane
    assert np.array_equal(first[0, 0].ravel(), raw[b"data"][0, :1024])


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "data_batch_1"
    with open(path, "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_cifar_batch(path)


def test_cifar_tensors_normalized_on_device(tmp_path):
    write_cifar(tmp_path)
    d = load_tensors("cifar10", tmp_path, "cpu", download=False)
    assert d.train_x.shape == (100, 3, 32, 32) and d.train_x.dtype == torch.float32 and d.augment
    assert abs(d.train_x.mean().item()) < 1.0


def test_missing_files_name_paths_and_remedy(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg and "HARNESS_DATA" in msg
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value) and "train-images-idx3-ubyte" in str(info.value)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "MNIST", offline)
    with pytest.raises(DatasetNotFoundError, match="Download failed: OSError: network unreachable"):
        load_mnist(tmp_path, download=True)


def test_real_mnist_from_shared_data_gz_and_raw(tmp_path):
    require_real_mnist()
    x, y, xt, yt = load_mnist(SHARED_DATA, download=False)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert np.bincount(y).min() > 5000 and set(np.unique(yt)) == set(range(10))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED_DATA / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(f, raw / f.name)
    xg, yg, _, _ = load_mnist(tmp_path, download=False)
    assert np.array_equal(xg, x) and np.array_equal(yg, y)


@pytest.mark.skipif(
    not FASHION_DEBIAN.is_dir() and not os.environ.get("CI"),
    reason="Debian package dataset-fashion-mnist not installed (CI installs it)",
)
def test_fashion_mnist_from_debian_package(tmp_path):
    d = load_tensors("fashion_mnist", tmp_path, "cpu", train_subset=1000, test_subset=100, download=False)
    assert d.train_x.shape == (1000, 1, 28, 28) and d.test_x.shape == (100, 1, 28, 28)
    p = load_tensors("fashion_mnist32", tmp_path, "cpu", train_subset=10, test_subset=10, download=False)
    assert p.train_x.shape == (10, 1, 32, 32)


def test_subset_is_fixed_across_seeds():
    assert np.array_equal(subset_indices(100, 10), subset_indices(100, 10))
    assert len(set(subset_indices(100, 10))) == 10 and len(subset_indices(5, 10)) == 5


def test_crop_flip_is_a_seeded_shift_or_flip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    b = crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    assert torch.equal(a, b) and a.shape == x.shape
    for i in range(2):  # each output is a (possibly flipped) shifted window of the zero-padded input
        xp = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [xp[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(2)) for w in windows)


# -- the files of a grid's datasets, checked once before anything trains ---------------------------------------
def placeholder_mnist(root: Path) -> Path:
    """``root`` holding the four MNIST file names (empty): enough for the check before training, not for loading."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / f"{name}.gz").touch()
    return root


def test_mnist_message_says_where_the_files_can_be_had(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg and str(tmp_path / "MNIST" / "raw") in msg


def test_missing_datasets_checks_names_only_and_tells_shared_files_once(tmp_path, monkeypatch):
    assert missing_datasets(["mnist_subset"], tmp_path) == []  # embedded: always there
    assert missing_datasets(["mnist"], placeholder_mnist(tmp_path / "p")) == []  # present (empty files: not read)
    (problem,) = missing_datasets(["mnist", "mnist_subset", "mnist"], tmp_path / "none")
    assert problem.startswith("dataset 'mnist': files not found")
    # fashion_mnist and fashion_mnist32 read the same files: one message (Debian's folder left out, it may exist)
    files = dataclasses.replace(FASHION_FILES, folders=("FashionMNIST/raw",))
    for name in ("fashion_mnist", "fashion_mnist32"):
        entry = DATASETS.entry(name)
        monkeypatch.setitem(DATASETS._entries, name, Entry(name, dataclasses.replace(entry.builder, files=files), ""))
    (problem,) = missing_datasets(["fashion_mnist32", "fashion_mnist"], tmp_path / "none")
    assert problem.startswith("dataset 'fashion_mnist32': files not found")


def suite_of(tmp_path, datasets: list[str], seeds=(0, 1)) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(datasets=datasets, seeds=list(seeds), methods=["full", "matrix"])))
    return path


@pytest.mark.parametrize("dry", [False, True])
def test_missing_data_stops_the_grid_once_before_anything_is_stored(tmp_path, dry):
    suite = suite_of(tmp_path, ["mnist", "cifar10"])
    args = ["run", str(suite), "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "r")]
    res = cli(*args, "--no-download", *(["--dry-run"] if dry else []))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("files not found") == 2  # one message per dataset, not one per run (8 runs)
    assert "dataset 'mnist'" in res.stderr and "dataset 'cifar10'" in res.stderr
    assert "ossci-datasets" in res.stderr and "cs.toronto.edu" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists() and not list(tmp_path.rglob("results.sqlite"))


def test_missing_data_is_downloaded_once_for_the_whole_grid(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    def offline(root, download=False):
        calls.append(root)
        raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "MNIST", offline)
    suite = suite_of(tmp_path, ["mnist"], seeds=(0, 1, 2))
    res = cli("run", str(suite), "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "r"))
    assert res.returncode == 2 and len(calls) == 1  # 6 runs, one try
    assert res.stderr.count("Download failed: OSError: network unreachable") == 1
    assert not (tmp_path / "r").exists()


def test_a_present_data_root_trains_and_settled_runs_need_no_files(tmp_path):
    write_cifar(tmp_path / "data", n=20)
    suite = suite_of(tmp_path, ["cifar10"], seeds=(0,))
    args = ["run", str(suite), "--results", str(tmp_path / "r")]
    res = cli(*args, "--data-root", str(tmp_path / "data"))
    assert res.returncode == 0, res.stderr
    assert status_counts(tmp_path / "r" / "results.sqlite") == {"done": 2}
    shutil.rmtree(tmp_path / "data")  # done runs train no more: their dataset is not needed
    again = cli(*args, "--data-root", str(tmp_path / "data"), "--no-download")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    forced = cli(*args, "--data-root", str(tmp_path / "data"), "--no-download", "--force")
    assert forced.returncode == 2 and forced.stderr.count("files not found") == 1
    assert status_counts(tmp_path / "r" / "results.sqlite") == {"done": 2}  # the store is left as it was


def test_real_mnist_root_passes_the_check():
    require_real_mnist()
    res = cli("run", "suites/mnist.yaml", "--dry-run", "--data-root", str(SHARED_DATA), cwd=ROOT)
    assert res.returncode == 0, res.stderr
