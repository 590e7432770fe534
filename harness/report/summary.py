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

from harness.config import UNFINISHED, RunStatus, always_shown_settings, did_you_mean, plain, when_set_defaults

from .cells import missing
from .errors import ReportError
from .judged import JUDGED, JUDGED_BY
from .query import where_mask
from .stats import confidence_interval, holm, paired_test, per_seed, significant

DEFAULT_REFERENCE = "full"
_MEANS = (
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
    "acc_ci95",
    "acc_ci_low",
    "acc_ci_high",
    "delta_acc",
    "ref_acc",
    "ref",
    "n_pairs",
    "p_raw",
    "p_vs_ref",
    "significant",
    "pair_note",
    "judged_by",
    "final_acc_mean",
    "best_val_acc_mean",
    "best_acc_mean",
    "start_acc_mean",
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


def set_always_shown(runs: pd.DataFrame) -> list[str]:
    """The :func:`harness.config.always_shown_settings` (``training.precision``) that some run sets away from its
    default: shown in every table and plot title then, even where all runs share it."""
    defaults = when_set_defaults()
    return [c for c in always_shown_settings() if c in runs.columns and (runs[c].astype(str) != str(defaults[c])).any()]


def shown_training_columns(runs: pd.DataFrame) -> list[str]:
    """The training settings a report shows: those that differ between runs, and the always-shown ones set."""
    varying = varying_training_columns(runs)
    return varying + [c for c in set_always_shown(runs) if c not in varying]


def setting_keys(training_cols: Sequence[str]) -> list[str]:
    return ["dataset", "model", "budget", *training_cols, "method", "params", "initialization"]


def group_keys(training_cols: Sequence[str]) -> list[str]:
    return ["dataset", "model", "budget", *training_cols]


def reference_runs(runs: pd.DataFrame, reference: str = DEFAULT_REFERENCE) -> pd.DataFrame:
    """The finished runs of the reference method among ``runs``."""
    return runs[(runs["method"] == reference) & (runs["status"] == RunStatus.DONE)]


def _judged_by(done: pd.DataFrame) -> str:
    """The metric a setting's runs are judged by (``mixed`` where they differ)."""
    names = set(done[JUDGED_BY].dropna()) - {""}
    return names.pop() if len(names) == 1 else ("mixed" if names else "")


def _statistics(g: pd.DataFrame, ci: str) -> dict[str, Any]:
    """Counts, means, spreads and the confidence interval of one setting's runs (only finished runs enter the
    statistics; accuracies and compression rates are in percent already, see :mod:`harness.units`)."""
    done = g[g["status"] == RunStatus.DONE]
    acc, comp = done[JUDGED], done["compression"]
    interval = confidence_interval(acc, ci)
    row: dict[str, Any] = {
        "n": len(done),
        "failed": int((g["status"] == RunStatus.FAILED).sum()),
        "unfinished": int(g["status"].isin(UNFINISHED).sum()),
        "acc_mean": acc.mean(),
        "acc_std": acc.std(ddof=1),
        "acc_ci95": interval.half,
        "acc_ci_low": interval.low,
        "acc_ci_high": interval.high,
        "judged_by": _judged_by(done),
        "final_acc_mean": done["final_acc"].mean(),
        "best_val_acc_mean": done["best_val_acc"].mean(),
        "best_acc_mean": done["best_acc"].mean(),
        # a run from a trained model: its test accuracy right after the method took the model, before fine-tuning
        "start_acc_mean": done["start_acc"].mean() if "start_acc" in done else math.nan,
        "compression": comp.mean(),
        "compression_std": comp.std(ddof=1),
        "compression_conv": done["compression_conv"].mean(),
        "compression_train": done["compression_train"].mean(),
    }
    row.update({col: done[col].mean() for col in _MEANS})
    row["ranks"] = summarize_ranks(done["ranks"])
    return row


def matched_reference(ref: pd.DataFrame, initialization: str, reference: str) -> tuple[pd.DataFrame, str]:
    """A row's reference runs among its group's (``ref``): those with its initialization where the reference
    has it, else all of them; and how the table names them."""
    same = ref[ref["initialization"] == initialization]
    if len(same):
        return same, f"{reference} / {initialization}"
    return ref, f"{reference}, all initializations"


def _reference_of(ref: pd.DataFrame, initialization: str, reference: str) -> dict[str, Any]:
    """ref_acc and ref of a row from its group's reference runs (:func:`matched_reference`)."""
    ref, what = matched_reference(ref, initialization, reference)
    if not len(ref):
        return {"ref_acc": math.nan, "ref": ""}
    return {"ref_acc": ref[JUDGED].mean(), "ref": f"{what} (n={len(ref)})"}


def _paired_with_reference(done: pd.DataFrame, ref: pd.DataFrame, test: str) -> dict[str, Any]:
    """The paired comparison of a setting's finished runs with its reference runs, by seed (several reference
    runs of one seed, as with "all initializations", count as their mean)."""
    if not len(ref):
        return {"n_pairs": 0, "p_raw": math.nan, "pair_note": ""}
    mine = per_seed(done["seed"], done[JUDGED])
    theirs = per_seed(ref["seed"], ref[JUDGED])
    seeds = sorted(set(mine.index) & set(theirs.index))
    result = paired_test(mine.loc[seeds], theirs.loc[seeds], test)
    return {"n_pairs": result.n_pairs, "p_raw": result.p, "pair_note": result.note}


def aggregate(
    runs: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    training_cols: Sequence[str] = (),
    reference: str = DEFAULT_REFERENCE,
    ci: str = "t",
    test: str = "ttest",
) -> pd.DataFrame:
    """One row per setting, aggregated over seeds.

    ``runs`` are labelled runs (:func:`harness.report.labels.label_runs`); ``baseline`` the finished runs
    that serve as the reference (default: the ``reference`` method's runs among ``runs``). ``ci`` is the
    interval method (``t`` or ``bootstrap``), ``test`` the paired test (``ttest`` or ``wilcoxon``) of every row
    of another method against its reference runs; ``p_vs_ref`` is its p-value Holm-corrected over the rows
    (``p_raw`` before the correction)."""
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
        row.update(_statistics(g, ci))
        ref = baseline[base_key == values_key(row[k] for k in gkeys)]
        row.update(_reference_of(ref, row["initialization"], reference))
        row["delta_acc"] = row["acc_mean"] - row["ref_acc"]
        if row["method"] == reference:
            row.update(n_pairs=0, p_raw=math.nan, pair_note="")
        else:
            matched, _ = matched_reference(ref, row["initialization"], reference)
            row.update(_paired_with_reference(g[g["status"] == RunStatus.DONE], matched, test))
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(dict.fromkeys([*keys[:-2], *_ORDER])))
    for col in ("n", "failed", "unfinished", "n_pairs"):
        out[col] = out[col].astype(int)
    out["p_vs_ref"] = holm(out["p_raw"]) if len(out) else []
    out["significant"] = [significant(p) for p in out["p_vs_ref"]]
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
    """The columns shown unless --columns says otherwise (failed, unfinished and ranks where there are any; the
    paired comparison with the reference where any row has a seed in common with it)."""
    cols = ["dataset", "model", "budget", *training_cols, "method", "params", "initialization", "n"]
    cols += [c for c in ("failed", "unfinished") if summary[c].any()]
    cols += ["acc", "delta_acc"]
    started = "start_acc_mean" in summary and bool(summary["start_acc_mean"].notna().any())  # from trained models
    cols += ["start_acc_mean"] if started else []
    cols += ["n_pairs", "p_vs_ref"] if bool((summary["n_pairs"] > 0).any()) else []
    cols += ["compression", "params_inference"]
    cols += ["params_storage"] if _differs(summary, "params_storage", "params_inference") else []
    kept = "model_bytes" in summary and bool(summary["model_bytes"].notna().any())  # runs that kept their model
    cols += ["model_bytes"] if kept else []
    cols += ["flops"] + (["flops_sparse"] if _differs(summary, "flops_sparse", "flops") else [])
    cols += ["epoch_seconds"]
    cols += ["total_epochs", "total_train_seconds"] if _differs(summary, "total_epochs", "epochs") else []
    cols += ["peak_memory_mb"]
    return cols + (["ranks"] if bool((summary["ranks"] != "").any()) else [])


def _differs(summary: pd.DataFrame, col: str, other: str) -> bool:
    """Whether some row has ``col`` and it differs from ``other`` (a sparse model's storage and FLOPs, the training
    cost of a method that trains several passes): those columns are shown only then."""
    a, b = pd.to_numeric(summary[col], errors="coerce"), pd.to_numeric(summary[other], errors="coerce")
    return bool((a.notna() & (a != b)).any())


def select_columns(summary: pd.DataFrame, spec: str | None, default: list[str]) -> list[str]:
    """``--columns``: comma-separated summary columns (``acc`` = the mean with its 95% confidence interval), or
    ``all``."""
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
