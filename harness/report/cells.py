"""Summary values as the text a table shows: headers, number formats, ``mean ± std``, SI prefixes.

Units: accuracies and compression rates in percent, accuracy differences in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.config import plain

# Summary columns: internal name -> header shown in Markdown, LaTeX and HTML. The internal names are what
# --columns and --sort take and what the CSV file uses. "acc" is virtual: "mean ± std" of acc_mean/acc_std.
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
    "best_acc_mean": "best acc (%)",
    "delta_acc": "Δ acc vs {ref} (pp)",
    "ref_acc": "{ref} acc (%)",
    "ref": "reference",
    "compression": "compression (%)",
    "compression_std": "compression std (%)",
    "compression_conv": "conv compression (%)",
    "compression_train": "train compression (%)",
    "params_inference": "params (inference)",
    "params_train": "params (training)",
    "model_bytes": "model file",
    "flops": "FLOPs (inference)",
    "epoch_seconds": "s / epoch",
    "train_seconds": "train s",
    "peak_memory_mb": "peak memory (MiB)",
    "ranks": "final ranks",
}
# How numeric summary columns print: digits after the point, "+" sign, thousands separator.
_NUMBER_FORMATS = {
    "acc_mean": "{:.2f}",
    "acc_std": "{:.2f}",
    "best_acc_mean": "{:.2f}",
    "delta_acc": "{:+.2f}",
    "ref_acc": "{:.2f}",
    "compression": "{:.1f}",
    "compression_std": "{:.1f}",
    "compression_conv": "{:.1f}",
    "compression_train": "{:.1f}",
    "params_inference": "{:,.0f}",
    "params_train": "{:,.0f}",
    "epoch_seconds": "{:.2f}",
    "train_seconds": "{:.1f}",
    "peak_memory_mb": "{:.0f}",
    "n": "{:d}",
    "failed": "{:d}",
    "unfinished": "{:d}",
}
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


def signed(v: Any, fmt: str = "{:+.2f}") -> str:
    """A number with a typographic minus, an em dash where missing."""
    return "—" if missing(v) else fmt.format(v).replace("-", "−")


def header(col: str, reference: str) -> str:
    """The header of a summary column."""
    return HEADERS.get(col, col).format(ref=reference)


def format_cell(col: str, row: pd.Series) -> str:
    """One summary cell as text."""
    if col == "acc":
        return pm(row.get("acc_mean"), row.get("acc_std"))
    v = row.get(col)
    if missing(v) or (isinstance(v, str) and v == ""):
        return "—"
    if col == "flops":
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


def display_frame(summary: pd.DataFrame, columns: Sequence[str], reference: str) -> tuple[pd.DataFrame, list[bool]]:
    """The summary as strings under readable headers, plus which columns are left-aligned text."""
    data = {header(c, reference): [format_cell(c, r) for _, r in summary.iterrows()] for c in columns}
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
                "measured acc (%)": pm(r["acc_mean"], r["acc_std"]),
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
