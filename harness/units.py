"""The units a user sees: accuracies and compression rates in percent, epochs counted from 1.

The store keeps what training produced (fractions, epochs counted from 0) and is never rewritten; everything
shown or exported (``harness export``, ``--where`` and ``--sort``, the report's tables and plots, the progress
lines of ``harness run``) passes a stored record through :func:`shown` once, at that boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Stored as fractions (0.975), shown in percent (97.5).
PERCENT_KEYS: frozenset[str] = frozenset(
    {
        "final_acc",
        "best_acc",
        "test_acc",
        "val_acc",
        "best_val_acc",
        "final_val_acc",
        "test_acc_at_best_val",
        "start_acc",
        "start_val_acc",
        "compression",
        "compression_train",
        "compression_conv",
        "compression_conv_train",
    }
)
#: Stored counting from 0, shown counting from 1.
EPOCH_KEYS: frozenset[str] = frozenset({"epoch", "best_epoch", "model_epoch"})


def percent(fraction: float) -> float:
    """A stored fraction in percent (rounded to 10 decimals, so that 0.975 shows as 97.5)."""
    return round(100 * fraction, 10)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def shown(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record (a run's metrics, an epoch row) in the units a user sees: the :data:`PERCENT_KEYS` in
    percent, ``epoch`` and ``best_epoch`` counted from 1; every other key, and a missing or non-numeric value, as it
    was."""
    out = dict(record)
    for key in PERCENT_KEYS & out.keys():
        if _number(out[key]):
            out[key] = percent(out[key])
    for key in EPOCH_KEYS & out.keys():
        if _number(out[key]):
            out[key] = int(out[key]) + 1
    return out
