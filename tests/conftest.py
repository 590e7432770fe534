"""Shared fixtures: the real MNIST files beside the checkout, small suites, a quiet CLI runner."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the harness CLI in a fresh process."""
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
