"""``harness export``: a store's runs (or epochs) table, selected and sorted, written as CSV, JSON or Parquet.

The tables are :func:`~harness.report.frames.runs_frame` and :func:`~harness.report.frames.epochs_frame`:
accuracies and compression rates in percent, epochs counted from 1, as everywhere a user sees them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from harness.store import Store

from .errors import ReportError
from .frames import epochs_frame, runs_frame
from .query import where_mask
from .summary import sort_rows

#: The file types ``--out`` may name, by extension.
SUFFIXES = {".csv": "CSV", ".json": "JSON", ".parquet": "Parquet"}
PARQUET_ENGINES = ("pyarrow", "fastparquet")  # the engines pandas writes Parquet with, in its order


def parquet_engine() -> str | None:
    """The first Parquet engine that imports here, or None."""
    for name in PARQUET_ENGINES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    return None


def check_out(out: Path) -> str:
    """The extension of an output file (``.csv``, ``.json``, ``.parquet``), refused with a :class:`ReportError`
    when it is none of these, or when it is Parquet and no engine is installed."""
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        supported = ", ".join(f"{s} ({what})" for s, what in SUFFIXES.items())
        what = f"cannot write {out.suffix} files" if out.suffix else "no extension names the format"
        raise ReportError(f"--out {out}: {what}; supported: {supported}")
    if suffix == ".parquet" and parquet_engine() is None:
        raise ReportError(f"--out {out}: writing Parquet needs pyarrow, which is not installed: pip install pyarrow")
    return suffix


def export_table(store: Store, epochs: bool = False, where: str | None = None, sort: str | None = None) -> pd.DataFrame:
    """The runs table of a store (one row per epoch with ``epochs``), rows selected by ``where``
    (:func:`~harness.report.query.where_mask`) and ordered by ``sort`` (:func:`~harness.report.summary.sort_rows`)."""
    df = epochs_frame(store) if epochs else runs_frame(store)
    if df.columns.empty:  # no runs: nothing to select or sort
        return df
    if where:
        df = df[where_mask(df, where)].reset_index(drop=True)
    return sort_rows(df, sort) if sort else df


def one_type_per_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each column that mixes value types (a parameter that is 8 in one run and "full" in another)
    as text, as Parquet columns are of one type; missing values stay missing."""
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_object_dtype(out[col].dtype):
            continue
        if len({type(v) for v in out[col].dropna()}) > 1:
            out[col] = out[col].map(lambda v: v if pd.isna(v) else str(v))
    return out


def write_table(df: pd.DataFrame, out: Path) -> None:
    """``df`` to ``out`` in the format its extension names (see :func:`check_out`)."""
    suffix = check_out(out)
    if suffix == ".json":
        df.to_json(out, orient="records", indent=1)
    elif suffix == ".parquet":
        engine = "fastparquet" if parquet_engine() == "fastparquet" else "pyarrow"
        one_type_per_column(df).to_parquet(out, engine=engine, index=False)
    else:
        df.to_csv(out, index=False)
