"""Shared fixtures: the real MNIST files beside the checkout, small suites, the CLI in-process or in a process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# A data root holding the real MNIST files: $HARNESS_DATA when set, else a `shared/data` folder beside the
# checkout (where CI keeps them). Tests that need the real files skip without them, except under CI.
SHARED_DATA = Path(os.environ["HARNESS_DATA"]) if os.environ.get("HARNESS_DATA") else ROOT.parent / "shared" / "data"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def has_real_mnist(root: Path = SHARED_DATA) -> bool:
    """Whether ``root/MNIST/raw`` holds the four MNIST files (raw or gzipped)."""
    raw = root / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


def require_real_mnist() -> None:
    """Skip (with the reason) when no data root with real MNIST is given; under CI, which has it, fail."""
    if has_real_mnist():
        return
    message = f"real MNIST files not found under {SHARED_DATA / 'MNIST' / 'raw'} (set HARNESS_DATA to a data root)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must have them")
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, pin each worker (and the processes it starts) to its own block of the CPUs, so that
    parallel workers do not oversubscribe the cores: torch's thread pools follow the affinity mask."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker and count and hasattr(os, "sched_setaffinity")):
        return
    cpus = sorted(os.sched_getaffinity(0))
    per_worker = len(cpus) // int(count)
    if per_worker < 1:
        return
    index = int(worker.removeprefix("gw"))
    os.sched_setaffinity(0, cpus[index * per_worker : (index + 1) * per_worker])


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Every test leaves torch's thread count as it found it (the CLI run in this process sets it)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One torch thread for this test (small workloads run faster so, and a CPU shared with other jobs far faster;
    the count is restored after the test)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite dict to a YAML file and return its path."""

    def write(data: dict, name: str = "suite.yaml") -> Path:
        p = tmp_path / name
        p.write_text(yaml.safe_dump(data))
        return p

    return write


def tiny_suite(**over) -> dict:
    """A suite of seconds: LeNet5, 1,000 images of the embedded subset, 1 epoch."""
    data = {
        "name": "tiny",
        "datasets": ["mnist_subset"],
        "models": ["lenet5"],
        "methods": ["full"],
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
        "budget": {"train_subset": 1000, "test_subset": 500},
    }
    data.update(over)
    return data


@dataclass
class CliResult:
    """What a command returned: its exit status and what it wrote (as ``subprocess.run`` gives it)."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> CliResult:
    """Run the harness CLI in this process (typer's runner): for what a command prints and returns."""
    from typer.testing import CliRunner

    from harness.cli import app

    with chdir(cwd or Path.cwd()):
        res = CliRunner(env={"COLUMNS": "200", **(env or {})}).invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return CliResult(res.exit_code, res.stdout, res.stderr)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the harness CLI in a fresh process: where the process is the point (signals, a clean interpreter)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def status_counts(db: Path) -> dict[str, int]:
    """Runs per status in a store's database, read directly (empty while it does not exist yet)."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db, timeout=30)
    try:
        return dict(con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
