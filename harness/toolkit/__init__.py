"""The public toolkit for writing methods: everything a built-in method uses, a plugin may use too.

- layers: :func:`select_layers` (shell patterns over module names, or the default choice),
  :func:`candidate_layers`, :func:`unmatched_patterns`, :func:`pattern_problems`, :func:`replace_module`,
  :func:`resize_tensors` (a prepared model given a trained one's tensor shapes, for loading it);
- ranks: :func:`resolve_rank` / :func:`rank_from_fraction` (one rounding rule for every method);
- deterministic linear algebra: :func:`single_threaded`; :func:`generator_seed`; linear algebra in float32
  whatever the run's precision: :func:`full_precision`, :func:`as_float32`;
- capture of layer inputs, outputs and output gradients: :class:`Capture`;
- parameters that change shape inside torch's optimizers: :func:`reshape_parameter`, :func:`swap_parameter`,
  :func:`moment_transport`;
- when to augment and truncate: :class:`TruncationSchedule`.
"""

from harness.toolkit.capture import Capture
from harness.toolkit.linalg import as_float32, full_precision, single_threaded
from harness.toolkit.modules import (
    FACTORIZABLE,
    candidate_layers,
    generator_seed,
    pattern_problems,
    replace_module,
    resize_tensors,
    select_layers,
    unmatched_patterns,
)
from harness.toolkit.optim_state import (
    SECOND_MOMENTS,
    Transport,
    moment_transport,
    reshape_parameter,
    swap_parameter,
)
from harness.toolkit.ranks import RankSpec, rank_from_fraction, resolve_rank
from harness.toolkit.schedule import TruncationSchedule

__all__ = [
    "FACTORIZABLE",
    "SECOND_MOMENTS",
    "Capture",
    "RankSpec",
    "Transport",
    "TruncationSchedule",
    "as_float32",
    "candidate_layers",
    "full_precision",
    "generator_seed",
    "moment_transport",
    "pattern_problems",
    "rank_from_fraction",
    "replace_module",
    "reshape_parameter",
    "resize_tensors",
    "resolve_rank",
    "select_layers",
    "single_threaded",
    "swap_parameter",
    "unmatched_patterns",
]
