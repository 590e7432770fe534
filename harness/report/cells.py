"""Summary values as the text a table shows: headers, number formats, ``mean ± std``, SI prefixes.

Units: accuracies and compression rates in percent, accuracy differences in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.config import plain

from .stats import format_p

# Summary columns: internal name -> header shown in Markdown, LaTeX and HTML. The internal names are what
# --columns and --sort take and what the CSV file uses. "acc" is virtual: the mean with its 95% confidence
# interval (acc_mean ± acc_ci95, or acc_mean [acc_ci_low, acc_ci_high] for a bootstrap interval).
# ``{ref}`` is the reference method (``full`` unless the report is asked for another).
HEADERS = {
    "dataset": "dataset",
    "model": "model",
    "budget": "budget",
    "method": "method",
    "params": "params",
    "params_json": "params (JSON)",
    "initialization": "init",
    "n": "n",
    "failed": "failed",
    "unfinished": "unfinished",
    "acc": "test acc (%)",
    "acc_mean": "test acc mean (%)",
    "acc_std": "test acc std (%)",
    "acc_ci95": "95% CI half-width (pp)",
    "acc_ci_low": "95% CI low (%)",
    "acc_ci_high": "95% CI high (%)",
    "final_acc_mean": "final-epoch test acc (%)",
    "best_val_acc_mean": "best val acc (%)",
    "best_acc_mean": "best test acc over epochs (%), earlier protocol",
    "start_acc_mean": "test acc at start (%)",
    "judged_by": "judged by",
    "delta_acc": "Δ acc vs {ref} (pp)",
    "ref_acc": "{ref} acc (%)",
    "ref": "reference",
    "n_pairs": "pairs",
    "p_raw": "p vs {ref} (uncorrected)",
    "p_vs_ref": "p vs {ref} (Holm)",
    "significant": "significant",
    "pair_note": "pairing note",
    "compression": "compression (%)",
    "compression_std": "compression std (%)",
    "compression_conv": "conv compression (%)",
    "compression_train": "train compression (%)",
    "params_inference": "params (inference)",
    "params_train": "params (training)",
    "params_storage": "storage (values + indices)",
    "model_bytes": "model file",
    "flops": "FLOPs (inference)",
    "flops_sparse": "FLOPs (sparse)",
    "epoch_seconds": "s / epoch",
    "train_seconds": "train s",
    "epochs": "epochs",
    "total_epochs": "epochs in all",
    "total_train_seconds": "train s in all",
    "peak_memory_mb": "peak memory (MiB)",
    "ranks": "final ranks",
}
# How numeric summary columns print: digits after the point, "+" sign, thousands separator.
_NUMBER_FORMATS = {
    "acc_mean": "{:.2f}",
    "acc_std": "{:.2f}",
    "acc_ci95": "{:.2f}",
    "acc_ci_low": "{:.2f}",
    "acc_ci_high": "{:.2f}",
    "final_acc_mean": "{:.2f}",
    "best_val_acc_mean": "{:.2f}",
    "best_acc_mean": "{:.2f}",
    "start_acc_mean": "{:.2f}",
    "delta_acc": "{:+.2f}",
    "ref_acc": "{:.2f}",
    "compression": "{:.1f}",
    "compression_std": "{:.1f}",
    "compression_conv": "{:.1f}",
    "compression_train": "{:.1f}",
    "params_inference": "{:,.0f}",
    "params_train": "{:,.0f}",
    "params_storage": "{:,.0f}",
    "epoch_seconds": "{:.2f}",
    "train_seconds": "{:.1f}",
    "epochs": "{:.4g}",
    "total_epochs": "{:.4g}",
    "total_train_seconds": "{:.1f}",
    "peak_memory_mb": "{:.0f}",
    "n": "{:d}",
    "failed": "{:d}",
    "unfinished": "{:d}",
    "n_pairs": "{:d}",
}
_P_VALUES = {"p_raw", "p_vs_ref"}
_LEFT = {
    "dataset",
    "model",
    "budget",
    "method",
    "params",
    "params_json",
    "initialization",
    "ranks",
    "ref",
    "label",
    "status",
    "error",
    "run_id",
    "setting",
    "citation",
    "note",
    "measured",
    "suite",
    "judged_by",
    "pair_note",
}


def missing(v: Any) -> bool:
    """None, NA, NaT or NaN."""
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(isinstance(v, float) and math.isnan(v))
    except TypeError:
        return False


def si(v: float) -> str:
    """4586000 -> '4.59 M'."""
    if missing(v):
        return ""
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.0f}"


def file_size(v: float) -> str:
    """A size in bytes as a reader writes it: 1725920 -> '1.73 MB' (decimal prefixes)."""
    if missing(v):
        return ""
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.0f} B"


def pm(mean: Any, std: Any, digits: int = 2) -> str:
    """``mean ± std``; only the mean where there is no spread (one run), an em dash where no mean."""
    if missing(mean):
        return "—"
    if missing(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def ci_cell(mean: Any, half: Any, low: Any = None, high: Any = None, digits: int = 2) -> str:
    """A mean with its confidence interval: ``mean ± half`` (a symmetric, Student-t interval), or
    ``mean [low, high]`` where ``low`` and ``high`` are given (a bootstrap interval); only the mean where there
    is no interval (one run), an em dash where no mean."""
    if missing(mean):
        return "—"
    if missing(low) or missing(high):
        return pm(mean, half, digits)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def signed(v: Any, fmt: str = "{:+.2f}") -> str:
    """A number with a typographic minus, an em dash where missing."""
    return "—" if missing(v) else fmt.format(v).replace("-", "−")


def header(col: str, reference: str) -> str:
    """The header of a summary column."""
    return HEADERS.get(col, col).format(ref=reference)


def format_cell(col: str, row: pd.Series, ci: str = "t") -> str:
    """One summary cell as text; ``ci`` is how the ``acc`` cell's interval was computed (``t``: ± half-width;
    ``bootstrap``: [low, high])."""
    if col == "acc":
        if ci == "bootstrap":
            return ci_cell(row.get("acc_mean"), row.get("acc_ci95"), row.get("acc_ci_low"), row.get("acc_ci_high"))
        return ci_cell(row.get("acc_mean"), row.get("acc_ci95"))
    v = row.get(col)
    if col in _P_VALUES:
        return format_p(math.nan if missing(v) else float(v))
    if col == "significant":
        return "yes" if v is True or v == 1 else "no" if v is False or v == 0 else "—"
    if missing(v) or (isinstance(v, str) and v == ""):
        return "—"
    if col in ("flops", "flops_sparse"):
        return si(v)
    if col == "model_bytes":
        return file_size(v)
    fmt = _NUMBER_FORMATS.get(col)
    if fmt is not None:
        try:
            return signed(int(v) if "d" in fmt else v, fmt)
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, float):
        return plain(v) if v.is_integer() else f"{v:.4g}"
    return str(v)


def display_frame(
    summary: pd.DataFrame, columns: Sequence[str], reference: str, ci: str = "t"
) -> tuple[pd.DataFrame, list[bool]]:
    """The summary as strings under readable headers, plus which columns are left-aligned text."""
    data = {header(c, reference): [format_cell(c, r, ci) for _, r in summary.iterrows()] for c in columns}
    return pd.DataFrame(data, columns=list(data)), [c in _LEFT for c in columns]


def comparison_frame(comparison: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """Published vs measured, as strings."""
    rows = []
    for _, r in comparison.iterrows():
        rows.append(
            {
                "dataset": r["dataset"],
                "model": r["model"],
                "method": r["method"],
                "setting": r["setting"] or "—",
                "quoted acc (%)": pm(r["quoted_acc_mean"], r["quoted_acc_std"]),
                "quoted compression (%)": signed(r["quoted_compression"], "{:.1f}"),
                "measured setting": r["measured"] or "—",
                "n": str(int(r["n"])),
                "measured acc (%), mean ± std": pm(r["acc_mean"], r["acc_std"]),
                "measured compression (%)": signed(r["compression"], "{:.1f}"),
                "Δ acc measured − quoted (pp)": signed(r["diff_acc"]),
                "source (quoted)": r["citation"] + (f" — {r['note']}" if r["note"] else ""),
            }
        )
    left = [True, True, True, True, False, False, True, False, False, False, False, True]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None), left


def not_done_frame(not_done: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """Failed and unfinished runs, as strings."""
    df = not_done[["label", "status", "attempts", "error"]].copy()
    df["error"] = df["error"].map(lambda e: "" if missing(e) else str(e))
    df["attempts"] = df["attempts"].map(str)
    return df, [True, True, False, True]


def _varying(frame: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    """The columns of ``cols`` whose values differ between the rows of ``frame`` (dataset and model always)."""
    return [c for c in cols if c in ("dataset", "model") or frame[c].astype(str).nunique() > 1]


def equal_compression_frame(
    equal: pd.DataFrame, group_keys: Sequence[str], cref: str, ci: str = "t"
) -> tuple[pd.DataFrame, list[bool]]:
    """The equal-compression table as strings: per group and level, the methods by accuracy (rank 1 first)."""
    groups = _varying(equal, group_keys)
    inits = bool(len(equal)) and bool((equal.groupby("method")["initialization"].nunique() > 1).any())
    rows = []
    for _, r in equal.iterrows():
        ok = r["status"] == "ok"
        row = {c: plain(r[c]) for c in groups}
        row["level (%)"] = f"{r['level']:g}"
        row["method"] = r["method"]
        if inits:
            row["init"] = r["initialization"]
        row["rank"] = "—" if missing(r["rank"]) else f"{int(r['rank'])}"
        if ok and ci == "bootstrap":
            acc = ci_cell(r["acc_mean"], r["acc_ci95"], r["acc_ci_low"], r["acc_ci_high"])
        else:
            acc = ci_cell(r["acc_mean"], r["acc_ci95"]) if ok else "out of range"
        row["test acc at level (%)"] = acc
        row["n"] = str(int(r["n"]))
        row["read from"] = r["source"]
        row[f"Δ vs {cref} (pp)"] = signed(r["delta_vs_cref"])
        row["pairs"] = str(int(r["n_pairs"])) if r["n_pairs"] else "—"
        row[f"p vs {cref} (Holm)"] = format_p(r["p_vs_cref"])
        rows.append(row)
    left_cols = {*groups, "method", "init", "read from"}
    columns = list(rows[0]) if rows else []
    return pd.DataFrame(rows, columns=columns or None), [c in left_cols for c in columns]


def ranking_frame(ranking: Any) -> tuple[pd.DataFrame, list[bool]]:
    """The ranking (:class:`~harness.report.ranking.Ranking`) as strings: per method its mean rank and, per
    block, the accuracy of the setting that represents it there with its rank in the block."""
    rows = []
    for method, mean_rank in ranking.mean_rank.items():
        row = {"method": method, "mean rank": f"{mean_rank:.2f}"}
        for block in ranking.blocks:
            acc, rank = ranking.scores.loc[method, block], ranking.ranks.loc[method, block]
            row[f"{block}: acc (%) (rank)"] = f"{acc:.2f} ({plain(float(rank))})"
        rows.append(row)
    columns = list(rows[0]) if rows else []
    return pd.DataFrame(rows, columns=columns or None), [c == "method" for c in columns]


def choices_frame(ranking: Any) -> tuple[pd.DataFrame, list[bool]]:
    """The settings that represent a method in a block where it ran several, and how each was chosen."""
    from .ranking import SELECTED_BY

    c = ranking.choices[ranking.choices["candidates"] > 1]
    df = pd.DataFrame(
        {
            "block": c["block"],
            "method": c["method"],
            "setting": c["setting"],
            "settings there": c["candidates"].map(str),
            "chosen by": c["selected_by"].map(SELECTED_BY),
            "test acc (%)": c["acc_mean"].map(lambda v: f"{v:.2f}"),
        }
    )
    return df.reset_index(drop=True), [True, True, True, False, True, False]
