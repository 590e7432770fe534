"""One rule that turns a rank specification into a rank, for every method.

A rank is given either as an int (an absolute rank) or as a float ``f`` in (0, 1], a fraction of the full
rank ``n``. The fraction rounds **up**: ``rank_from_fraction(f, n) = ceil(f * n)``, clipped to ``[1, n]``, so a
fraction never gives a rank of zero and ``f = 1`` gives full rank. ``f * n`` is rounded to 9 decimals first,
so that ``0.3 * 10`` (3.0000000000000004 in floating point) is rank 3, not 4. Every method (fixed-rank
formats, DLRT/TDLRT caps and initial ranks, plugins) uses this rule, so equal specifications mean equal ranks.
"""

from __future__ import annotations

import math

RankSpec = int | float


def rank_from_fraction(fraction: float, n: int) -> int:
    """``ceil(fraction * n)`` clipped to ``[1, n]`` (``fraction`` in (0, 1])."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a fractional rank must be in (0, 1] (an int is an absolute rank), got {fraction}")
    return min(n, max(1, math.ceil(round(fraction * n, 9))))


def resolve_rank(spec: RankSpec, n: int) -> int:
    """A rank from an int (absolute, clipped to ``[1, n]``) or a float fraction of ``n`` (rounding up)."""
    if isinstance(spec, bool):
        raise ValueError(f"a rank must be an int or a fraction, got {spec!r}")
    if isinstance(spec, float):
        return rank_from_fraction(spec, n)
    return max(1, min(int(spec), n))
