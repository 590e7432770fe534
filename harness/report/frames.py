"""Stored runs as flat pandas tables (one row per run, one row per epoch), labelled from their configuration."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.config import run_label
from harness.store import Store

_CONFIG_COLUMNS = ("dataset", "model", "method", "initialization", "seed")
_EPOCH_COLUMNS = ("epoch", "train_loss", "test_acc", "test_loss", "seconds", "lr")


def flatten_run(run: dict[str, Any]) -> dict[str, Any]:
    """One run as a flat dict: identity, config fields, ``param.*``, ``budget.*``, ``training.*``, metrics.

    The ``label`` is built from the stored configuration (:func:`harness.config.run_label`), so that runs
    stored by older versions are labelled like new ones."""
    c = run["config"]
    row: dict[str, Any] = {
        "run_id": run["id"],
        "label": run_label(c),
        "suite": run["suite"],
        "status": run["status"],
        "attempts": run["attempts"],
    }
    row.update({k: c[k] for k in _CONFIG_COLUMNS})
    row["params"] = json.dumps(c["params"], sort_keys=True)
    for k, v in sorted(c["params"].items()):
        row[f"param.{k}"] = json.dumps(v) if isinstance(v, list | dict) else v
    for section in ("budget", "training"):
        for k, v in sorted((c.get(section) or {}).items()):
            row[f"{section}.{k}"] = v
    for k, v in (run["metrics"] or {}).items():
        row[k] = json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v
    row["error"] = (run["error"] or "").split("\n", 1)[0] or None
    return row


def runs_frame(store: Store) -> pd.DataFrame:
    """Every run of a store as a DataFrame (empty frame when there are none)."""
    return pd.DataFrame([flatten_run(r) for r in store.runs()])


def epochs_frame(store: Store) -> pd.DataFrame:
    """Every finished epoch of every run, with the run's identity columns."""
    runs = {r["id"]: r for r in store.runs()}
    rows = []
    for e in store.epochs():
        run = runs.get(e["run_id"])
        if run is None:
            continue
        c = run["config"]
        row = {k: c[k] for k in _CONFIG_COLUMNS}
        row.update(run_id=e["run_id"], label=run_label(c), params=json.dumps(c["params"], sort_keys=True))
        row.update({k: e[k] for k in _EPOCH_COLUMNS})
        row["layers"] = json.dumps(e["layers"])
        rows.append(row)
    return pd.DataFrame(rows)
