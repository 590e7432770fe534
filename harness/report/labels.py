"""How the report names runs and settings: from the stored configurations alone (never a registry).

A run's parameters are shown only where they tell it apart from other runs of its method
(:func:`harness.config.distinguishing_params`); tables and plots use the same columns built here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.config import decode_params, distinguishing_params, params_text, plain, setting_label

from .cells import missing
from .judged import JUDGED, JUDGED_BY, judged_accuracy, judged_by

# Columns every runs frame gets (NaN where a run has no metrics yet; stores of the earlier protocol have no
# validation metrics).
RUN_METRICS = (
    "judged_acc",
    "final_acc",
    "best_acc",
    "best_val_acc",
    "test_acc_at_best_val",
    "best_epoch",
    "compression",
    "compression_conv",
    "compression_train",
    "params_inference",
    "params_train",
    "params_storage",
    "model_bytes",
    "flops",
    "flops_sparse",
    "epoch_seconds",
    "train_seconds",
    "epochs",
    "total_epochs",
    "total_train_seconds",
    "peak_memory_mb",
    "ranks",
    "error",
    "judged_by",
)
_NUMERIC = RUN_METRICS[:-3]
_BUDGET_ORDER = ("budget.train_subset", "budget.test_subset", "budget.epochs")


def short_params_labels(methods: Sequence[str], params: Sequence[Any]) -> list[str]:
    """``rank=8`` per run: the parameters that vary among the given runs of its method (none for a method
    run with one setting)."""
    keys = distinguishing_params(methods, params)
    return [params_text(decode_params(p), keys[m]) for m, p in zip(methods, params, strict=True)]


def setting_labels(methods: Sequence[str], params: Sequence[Any]) -> list[str]:
    """``svd[rank=8]`` per run: the method with the parameters that distinguish its runs."""
    keys = distinguishing_params(methods, params)
    return [setting_label(m, p, keys[m]) for m, p in zip(methods, params, strict=True)]


def budget_label(row: pd.Series, budget_cols: Sequence[str]) -> str:
    """The budget of a run as ``train_subset=2000, test_subset=1000`` (``none``: full data and epochs)."""
    parts = [f"{c.removeprefix('budget.')}={plain(row[c])}" for c in budget_cols if not missing(row[c])]
    return ", ".join(parts) or "none"


def _budget_columns(runs: pd.DataFrame) -> list[str]:
    cols = sorted(c for c in runs.columns if c.startswith("budget."))
    return [c for c in _BUDGET_ORDER if c in cols] + [c for c in cols if c not in _BUDGET_ORDER]


def label_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``budget``, ``params_label`` (``rank=8``), ``method_label`` (``svd[rank=8]``) and ``setting``
    (the method label, `` / init`` added where the method ran with several initializations), and the accuracy
    each run is judged by (``judged_acc``, :mod:`harness.report.judged`)."""
    runs = runs.copy()
    for col in RUN_METRICS:
        if col not in runs.columns:
            runs[col] = None
    budget_cols = _budget_columns(runs)
    methods, params = list(runs["method"]), list(runs["params"])
    runs["budget"] = [budget_label(r, budget_cols) for _, r in runs.iterrows()] if len(runs) else []
    runs["params_label"] = short_params_labels(methods, params)
    runs["method_label"] = setting_labels(methods, params)
    multi_init = runs.groupby("method")["initialization"].nunique() > 1 if len(runs) else pd.Series(dtype=bool)
    runs["setting"] = [
        s + (f" / {init}" if multi_init.get(m, False) else "")
        for s, m, init in zip(runs["method_label"], methods, runs["initialization"], strict=True)
    ]
    for col in _NUMERIC:
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    runs[JUDGED], runs[JUDGED_BY] = judged_accuracy(runs), judged_by(runs)
    return runs
