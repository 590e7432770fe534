"""How many runs a suite may expand to, counted from the sizes of its lists before any run is made.

The limit is 100,000 runs (:data:`DEFAULT_MAX_RUNS`); ``$HARNESS_MAX_RUNS`` or ``harness run --max-runs N``
sets another, and 0 means no limit. A suite above it is refused with its count (exit 2), so that a grid of
millions of runs stops at once instead of filling the memory while it expands.
"""

from __future__ import annotations

import math
import os
from typing import Any

DEFAULT_MAX_RUNS = 100_000
MAX_RUNS_ENV = "HARNESS_MAX_RUNS"


def run_limit() -> int:
    """``$HARNESS_MAX_RUNS`` if set, else :data:`DEFAULT_MAX_RUNS`; a ValueError when it is no count."""
    text = os.environ.get(MAX_RUNS_ENV, "").strip()
    try:
        limit = int(text) if text else DEFAULT_MAX_RUNS
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"{MAX_RUNS_ENV} must be a whole number >= 0 (0: no limit), got {text!r}")
    return limit


def count_runs(grid: Any) -> int:
    """The runs a schema-valid grid (a :class:`harness.suite.Suite`) expands to at most (before duplicates); a
    tuned grid's settings each have their trials beside their seeds."""
    per_pair = 0
    for entry in grid.methods:
        settings = math.prod(len(v) if isinstance(v, list) else 1 for v in entry.params.values())
        per_pair += settings * len(entry.initializations or grid.initializations)
    per_setting = len(grid.seeds) + (grid.tuning.trials if getattr(grid, "tuning", None) is not None else 0)
    return len(grid.datasets) * len(grid.models) * per_pair * per_setting


def too_many(counts: list[int], limit: int) -> str | None:
    """Why grids of these run counts are refused under ``limit``, or None when they are not."""
    if not limit or sum(counts) <= limit:
        return None
    each = f" ({' + '.join(f'{n:,}' for n in counts)} in its grids)" if len(counts) > 1 else ""
    return (
        f"this suite expands to {sum(counts):,} runs{each}, more than the limit of {limit:,}; narrow the grid, "
        f"or raise the limit with --max-runs N or {MAX_RUNS_ENV}=N (0: no limit)"
    )
