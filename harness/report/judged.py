"""The accuracy a run is judged by, defined once for every table, test and plot of the report.

A run trained with a validation split is judged by ``test_acc_at_best_val``: its test accuracy at the epoch
that was best on *validation*. A run without one (stores of the earlier protocol) is judged by ``final_acc``,
its last epoch's test accuracy. ``best_acc`` (the best *test* accuracy over the epochs) selects on the test set
and is never used to judge or select anything; the report shows it only as the earlier protocol's column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

#: The column (in the runs frame and ``harness export``) holding the accuracy a run is judged by.
JUDGED = "judged_acc"
#: Which metric gave it: the first of these a run has.
JUDGED_FROM = ("test_acc_at_best_val", "final_acc")
#: The column naming, per run, which of :data:`JUDGED_FROM` its judged accuracy is.
JUDGED_BY = "judged_by"


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


def judged_metric(record: Mapping[str, Any]) -> str | None:
    """The name of the metric a run (its metrics, or a row of the runs frame) is judged by; None without any."""
    for name in JUDGED_FROM:
        if _number(record.get(name)):
            return name
    return None


def judged_value(record: Mapping[str, Any]) -> float | None:
    """The accuracy a run is judged by (see the module's docstring), or None for a run without metrics."""
    name = judged_metric(record)
    return None if name is None else float(record[name])


def judged_accuracy(runs: pd.DataFrame) -> pd.Series:
    """Per run: ``test_acc_at_best_val`` where it has it, else ``final_acc`` (NaN where neither)."""
    out = pd.Series(math.nan, index=runs.index, dtype=float)
    for name in reversed(JUDGED_FROM):  # the first of JUDGED_FROM wins
        if name in runs.columns:
            v = pd.to_numeric(runs[name], errors="coerce")
            out = v.where(v.notna(), out)
    return out


def judged_by(runs: pd.DataFrame) -> pd.Series:
    """Per run: the name of the metric :func:`judged_accuracy` took (empty where none)."""
    out = pd.Series("", index=runs.index, dtype=object)
    for name in reversed(JUDGED_FROM):
        if name in runs.columns:
            has = pd.to_numeric(runs[name], errors="coerce").notna()
            out = out.where(~has, name)
    return out


def protocol_of(by: pd.Series) -> str:
    """How a set of runs (their :func:`judged_by`) is judged, in words for a table's legend."""
    names = set(by[by != ""])
    if names == {"test_acc_at_best_val"}:
        return "test accuracy at the epoch best on validation"
    if names == {"final_acc"}:
        return "final-epoch test accuracy (no validation split: earlier protocol)"
    if not names:
        return "no accuracy"
    return (
        "test accuracy at the epoch best on validation where a run has a validation split, else its final-epoch "
        "test accuracy (earlier protocol)"
    )


def axis_label(by: pd.Series, detail: str = "") -> str:
    """A short name of the judged accuracy of a set of runs (their :func:`judged_by`), for an axis: in %, with
    ``detail`` after the unit."""
    names = set(by[by != ""])
    if names == {"test_acc_at_best_val"}:
        name = "test accuracy at the best-validation epoch"
    elif names == {"final_acc"}:
        name = "final test accuracy"
    else:
        name = "test accuracy (best-validation epoch, else final)"
    return f"{name} (%{', ' + detail if detail else ''})"
