"""The public toolkit for writing methods: everything a built-in method uses, a plugin may use too."""

from harness.toolkit.linalg import single_threaded
from harness.toolkit.ranks import RankSpec, rank_from_fraction, resolve_rank
from harness.toolkit.modules import (
    FACTORIZABLE,
    candidate_layers,
    generator_seed,
    replace_module,
    select_layers,
    unmatched_patterns,
)

__all__ = [
    "FACTORIZABLE",
    "RankSpec",
    "candidate_layers",
    "generator_seed",
    "rank_from_fraction",
    "replace_module",
    "resolve_rank",
    "select_layers",
    "single_threaded",
    "unmatched_patterns",
]
