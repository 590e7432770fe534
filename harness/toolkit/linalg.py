"""Deterministic linear algebra for methods: the same result whatever the thread count or worker layout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with one intra-op thread (restored afterwards).

    Results of threaded LAPACK/MKL routines can depend on the thread count, so a run would not reproduce
    across ``--workers`` settings; and on the 2-core CI machine MKL's threaded SVD of wide matrices (e.g. a
    512 x 4608 unfolding) was measured 10-15x slower than single-threaded (8 s vs 0.5 s). SVD-based
    decompositions (HOSVD, HOOI, TT-SVD, truncated SVD) and the small QR/SVD work of every DLRT/TDLRT step
    therefore run inside this context.
    """
    n = torch.get_num_threads()
    if n == 1:  # nothing to change (this sits on the per-step path of dlrt/tdlrt)
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
