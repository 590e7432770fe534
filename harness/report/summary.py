"""Aggregation: labelled runs -> one summary row per setting, each beside its reference method.

One summary row per *setting*: (dataset, model, budget, training settings that differ between runs,
method, method parameters, initialization), aggregated over seeds. Only finished runs enter the means;
failed and unfinished runs are counted in every row. The reference method (``full`` unless asked otherwise)
of the same dataset, model, budget and training settings is what "delta acc" compares with; budget runs are
never compared with unbudgeted ones. Every number comes from the store, none from a registry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from harness.config import UNFINISHED, RunStatus, did_you_mean, plain

from .cells import missing
from .errors import ReportError
from .query import where_mask

DEFAULT_REFERENCE = "full"
_MEANS = (
    "params_inference",
    "params_train",
    "model_bytes",
    "flops",
    "epoch_seconds",
    "train_seconds",
    "peak_memory_mb",
)
_ORDER = (
    "method",
    "params",
    "initialization",
    "params_json",
    "n",
    "failed",
    "unfinished",
    "acc_mean",
    "acc_std",
    "delta_acc",
    "ref_acc",
    "ref",
    "best_acc_mean",
    "compression",
    "compression_std",
    "compression_conv",
    "compression_train",
    *_MEANS,
    "ranks",
)


def summarize_ranks(values: Iterable[Any]) -> str:
    """Final ranks of the runs of one setting (JSON dicts layer -> ranks) as ``layer: r1×r2; ...``.

    A rank that differs between seeds prints as its mean with one decimal."""
    dicts = []
    for v in values:
        if missing(v):
            continue
        d = json.loads(v) if isinstance(v, str) else v
        if d:
            dicts.append(d)
    layers: list[str] = []
    for d in dicts:
        layers += [k for k in d if k not in layers]
    parts = []
    for layer in layers:
        lists = [d[layer] for d in dicts if d.get(layer) is not None]
        if not lists:
            continue
        modes = []
        for i in range(max(len(x) for x in lists)):
            vals = [x[i] for x in lists if i < len(x)]
            same = all(v == vals[0] for v in vals)
            modes.append(plain(vals[0]) if same else f"{sum(vals) / len(vals):.1f}")
        parts.append(f"{layer}: {'×'.join(modes)}")
    return "; ".join(parts)


def row_key(df: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    """One string per row that identifies its values in ``cols`` (NaN-safe, type-safe matching)."""
    if df.empty:
        return pd.Series([], dtype=str, index=df.index)
    return df[list(cols)].astype(str).agg("\x1f".join, axis=1)


def values_key(values: Iterable[Any]) -> str:
    """The :func:`row_key` of one row's values."""
    return "\x1f".join(str(v) for v in values)


def varying_training_columns(runs: pd.DataFrame) -> list[str]:
    """Training settings that differ between runs: part of every setting's identity then."""
    cols = [c for c in runs.columns if c.startswith("training.")]
    return [c for c in cols if runs[c].astype(str).nunique() > 1]


def setting_keys(training_cols: Sequence[str]) -> list[str]:
    return ["dataset", "model", "budget", *training_cols, "method", "params", "initialization"]


def group_keys(training_cols: Sequence[str]) -> list[str]:
    return ["dataset", "model", "budget", *training_cols]


def reference_runs(runs: pd.DataFrame, reference: str = DEFAULT_REFERENCE) -> pd.DataFrame:
    """The finished runs of the reference method among ``runs``."""
    return runs[(runs["method"] == reference) & (runs["status"] == RunStatus.DONE)]


def _statistics(g: pd.DataFrame) -> dict[str, Any]:
    """Counts, means and spreads of one setting's runs (only finished runs enter the statistics; accuracies and
    compression rates are in percent already, see :mod:`harness.units`)."""
    done = g[g["status"] == RunStatus.DONE]
    acc, comp = done["final_acc"], done["compression"]
    row: dict[str, Any] = {
        "n": len(done),
        "failed": int((g["status"] == RunStatus.FAILED).sum()),
        "unfinished": int(g["status"].isin(UNFINISHED).sum()),
        "acc_mean": acc.mean(),
        "acc_std": acc.std(ddof=1),
        "best_acc_mean": done["best_acc"].mean(),
        "compression": comp.mean(),
        "compression_std": comp.std(ddof=1),
        "compression_conv": done["compression_conv"].mean(),
        "compression_train": done["compression_train"].mean(),
    }
    row.update({col: done[col].mean() for col in _MEANS})
    row["ranks"] = summarize_ranks(done["ranks"])
    return row


def _reference_of(ref: pd.DataFrame, initialization: str, reference: str) -> dict[str, Any]:
    """ref_acc and ref of a row from its group's reference runs: those with its initialization where the
    reference has it, else all of them."""
    same = ref[ref["initialization"] == initialization]
    if len(same):
        ref, what = same, f"{reference} / {initialization}"
    else:
        what = f"{reference}, all initializations"
    if not len(ref):
        return {"ref_acc": math.nan, "ref": ""}
    return {"ref_acc": ref["final_acc"].mean(), "ref": f"{what} (n={len(ref)})"}


def aggregate(
    runs: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    training_cols: Sequence[str] = (),
    reference: str = DEFAULT_REFERENCE,
) -> pd.DataFrame:
    """One row per setting, aggregated over seeds.

    ``runs`` are labelled runs (:func:`harness.report.labels.label_runs`); ``baseline`` the finished runs
    that serve as the reference (default: the ``reference`` method's runs among ``runs``)."""
    keys = setting_keys(training_cols)
    gkeys = group_keys(training_cols)
    if baseline is None:
        baseline = reference_runs(runs, reference)
    base_key = row_key(baseline, gkeys)
    rows = []
    for values, g in runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, values, strict=True))
        row["params_json"] = row["params"]
        row["params"] = g["params_label"].iloc[0]
        row.update(_statistics(g))
        ref = baseline[base_key == values_key(row[k] for k in gkeys)]
        row.update(_reference_of(ref, row["initialization"], reference))
        row["delta_acc"] = row["acc_mean"] - row["ref_acc"]
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(dict.fromkeys([*keys[:-2], *_ORDER])))
    for col in ("n", "failed", "unfinished"):
        out[col] = out[col].astype(int)
    return out


def default_sort(
    summary: pd.DataFrame, training_cols: Sequence[str], reference: str = DEFAULT_REFERENCE
) -> pd.DataFrame:
    """Grouped by dataset, model, budget; the reference method first in each group."""
    if summary.empty:
        return summary
    s = summary.assign(_base=(summary["method"] != reference).astype(int))
    by = ["dataset", "model", "budget", *training_cols, "_base", "method", "params", "initialization"]
    return s.sort_values(by, kind="stable").drop(columns="_base").reset_index(drop=True)


def sort_rows(frame: pd.DataFrame, spec: str, aliases: dict[str, str] | None = None) -> pd.DataFrame:
    """``--sort``: comma-separated columns of ``frame``, ``-`` in front for descending (``-final_acc,method``);
    ``aliases`` maps short names to columns. An unknown column is a :class:`ReportError` naming the others."""
    by, ascending = [], []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name = (aliases or {}).get(item.lstrip("-+"), item.lstrip("-+"))
        if name not in frame.columns:
            known = list(map(str, frame.columns))
            raise ReportError(
                f"--sort: no column {name!r}{did_you_mean(name, known)}; sortable columns: {', '.join(known)}"
            )
        by.append(name)
        ascending.append(not item.startswith("-"))
    if not by:
        return frame
    return frame.sort_values(by, ascending=ascending, kind="stable", na_position="last").reset_index(drop=True)


def apply_sort(summary: pd.DataFrame, spec: str) -> pd.DataFrame:
    """``--sort`` of the report: summary columns, ``acc`` for ``acc_mean`` (``-acc,method``)."""
    return sort_rows(summary, spec, {"acc": "acc_mean"})


def default_columns(summary: pd.DataFrame, training_cols: Sequence[str]) -> list[str]:
    """The columns shown unless --columns says otherwise (failed, unfinished and ranks where there are any)."""
    cols = ["dataset", "model", "budget", *training_cols, "method", "params", "initialization", "n"]
    cols += [c for c in ("failed", "unfinished") if summary[c].any()]
    cols += ["acc", "delta_acc", "compression", "params_inference"]
    cols += ["model_bytes"] if bool(summary["model_bytes"].notna().any()) else []  # runs that kept their model
    cols += ["flops", "epoch_seconds", "peak_memory_mb"]
    return cols + (["ranks"] if bool((summary["ranks"] != "").any()) else [])


def select_columns(summary: pd.DataFrame, spec: str | None, default: list[str]) -> list[str]:
    """``--columns``: comma-separated summary columns (``acc`` = mean ± std), or ``all``."""
    if not spec:
        return default
    available = ["acc", *summary.columns]
    if spec.strip() == "all":
        return [c for c in summary.columns if c != "params_json"]
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ReportError(
            f"--columns: unknown column(s) {', '.join(map(repr, unknown))}; available: {', '.join(available)}"
        )
    return list(dict.fromkeys(wanted))


def filter_runs(runs: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """``--where``: a filter over the runs table (the columns of ``harness export``); see :mod:`.query`."""
    if not where:
        return runs
    return runs[where_mask(runs, where)]
