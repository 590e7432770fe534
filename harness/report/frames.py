"""Stored runs as flat pandas tables (one row per run, one row per epoch), labelled from their configuration.

This is the boundary between the store and what a user sees: accuracies and compression rates in percent,
epochs counted from 1 (:func:`harness.units.shown`); the store itself keeps fractions and epochs from 0.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

from harness.config import initialization_label, plain, run_label, short_run_labels, when_set_defaults
from harness.store import Store
from harness.units import shown

from .judged import JUDGED, JUDGED_BY, judged_metric, judged_value

_CONFIG_COLUMNS = ("dataset", "model", "method", "initialization", "seed")
_EPOCH_COLUMNS = ("epoch", "train_loss", "test_acc", "test_loss", "val_acc", "val_loss", "seconds", "lr")


def flatten_run(run: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    """One run as a flat dict: identity, config fields, ``param.*``, ``budget.*``, ``training.*``, metrics
    (accuracies and compression rates in percent), and the accuracy the run is judged by (``judged_acc``, from
    ``judged_by``: see :mod:`harness.report.judged`).

    The ``label`` (default: the full :func:`harness.config.run_label`) is built from the stored configuration,
    so that runs stored by older versions are labelled like new ones."""
    c = run["config"]
    row: dict[str, Any] = {
        "run_id": run["id"],
        "label": label or run_label(c),
        "suite": run["suite"],
        "status": run["status"],
        "attempts": run["attempts"],
    }
    row.update({k: c[k] for k in _CONFIG_COLUMNS})
    # a run from a trained model is its own setting: its initialization names its source (harness.pretrained)
    row["initialization"] = initialization_label(c)
    row["pretrained"] = next(iter(c["pretrained"].values())) if c.get("pretrained") else None
    row["params"] = json.dumps(c["params"], sort_keys=True)
    for k, v in sorted(c["params"].items()):
        row[f"param.{k}"] = json.dumps(v) if isinstance(v, list | dict) else v
    for section in ("budget", "training"):
        for k, v in sorted((c.get(section) or {}).items()):
            row[f"{section}.{k}"] = v
    row.update(protocol_columns(c))
    metrics = shown(run["metrics"] or {})
    for k, v in metrics.items():
        row[k] = json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v
    row[JUDGED] = judged_value(metrics)
    row[JUDGED_BY] = judged_metric(metrics)
    row["error"] = (run["error"] or "").split("\n", 1)[0] or None
    return row


def protocol_columns(config: dict[str, Any]) -> dict[str, Any]:
    """A run's place in the protocol: its validation split (``none``: the earlier protocol, no split), its role
    (``trial`` of a tuning, ``tuned``: a run of the setting a tuning chose, or ``''``), the tuning's id, the trial's
    index (the chosen trial's, for a tuned run), and for a tuned run the keys tuning set (JSON list)."""
    split = config.get("validation")
    trial, tuned = config.get("trial") or {}, config.get("tuned") or {}
    about = trial or tuned
    return {
        "validation": f"{plain(split['size'])} (seed {split['seed']})" if split else "none",
        "role": "trial" if trial else "tuned" if tuned else "",
        "tuning": about.get("tuning"),
        "tuned_setting_id": about.get("setting"),
        "tuning_space": trial.get("space"),
        "tuning_metric": trial.get("metric"),
        "trial": trial.get("index", tuned.get("trial")),
        "tuned_keys": json.dumps(about["keys"]) if about.get("keys") else None,
    }


def run_labels(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Run id -> a label naming what tells the run apart from the others (:func:`short_run_labels`)."""
    return dict(zip([r["id"] for r in runs], short_run_labels([r["config"] for r in runs]), strict=True))


def runs_frame(store: Store) -> pd.DataFrame:
    """Every run of a store as a DataFrame (empty frame when there are none). A setting added later
    (:data:`harness.config.WHEN_SET`) that some runs set shows its default on the runs that do not."""
    runs = store.runs()
    labels = run_labels(runs)
    rows = [flatten_run(r, labels[r["id"]]) for r in runs]
    for row, init in zip(rows, seed_matched_sources(runs), strict=True):
        if init is not None:
            row["initialization"] = init
    return with_when_set_defaults(pd.DataFrame(rows))


def seed_matched_sources(runs: list[dict[str, Any]]) -> list[str | None]:
    """Per run, the initialization label of a run that starts from the same seed's run of a stored setting (a
    pretrained grid: each seed's runs start from that seed's dense run), ``decompose@setting:1a2b3c4d`` with the
    source's configuration hashed without its seed, so that its seeds form one group; None for the others (they
    keep :func:`harness.config.initialization_label`)."""
    by_id = {r["id"]: r["config"] for r in runs}
    out: list[str | None] = []
    for r in runs:
        c = r["config"]
        source = by_id.get((c.get("pretrained") or {}).get("run", ""))
        if source is None or source.get("seed") != c.get("seed"):
            out.append(None)
            continue
        setting = json.dumps({k: v for k, v in source.items() if k != "seed"}, sort_keys=True)
        out.append(f"{c['initialization']}@setting:{hashlib.sha256(setting.encode()).hexdigest()[:8]}")
    return out


def with_when_set_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the missing values of its :data:`~harness.config.WHEN_SET` training columns filled in with
    their defaults (a stored run leaves such a setting out of its configuration when it is at the default)."""
    for col, default in when_set_defaults().items():
        if col in frame.columns:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), default)
    return frame


def epochs_frame(store: Store) -> pd.DataFrame:
    """Every finished epoch of every run (numbered from 1, test accuracy in percent), with the run's identity
    columns."""
    runs = {r["id"]: r for r in store.runs()}
    labels = run_labels(list(runs.values()))
    rows = []
    for e in store.epochs():
        run = runs.get(e["run_id"])
        if run is None:
            continue
        c = run["config"]
        row = {k: c[k] for k in _CONFIG_COLUMNS}
        row.update(run_id=e["run_id"], label=labels[run["id"]], params=json.dumps(c["params"], sort_keys=True))
        row.update(shown({k: e.get(k) for k in _EPOCH_COLUMNS}))
        row["layers"] = json.dumps(e["layers"])
        rows.append(row)
    return pd.DataFrame(rows)
