"""Linear algebra for methods that must not depend on how a run is executed: the same result whatever the
thread count or worker layout (:func:`single_threaded`), and in float32 or float64 whatever the run's precision
(:func:`full_precision`, :func:`as_float32`)."""

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


@contextmanager
def full_precision(device: torch.device | str) -> Iterator[None]:
    """Autocast off for ``device``'s type inside the block: every operation runs in its inputs' own dtype.

    A run with ``training.precision: bf16`` or ``fp16`` trains inside autocast, which casts every matrix product
    and convolution to that dtype. A method whose step computes its own linear algebra (QR, SVD, eigenvalue
    decompositions, and the products that feed them) runs it inside this block on float32 tensors
    (:func:`as_float32`), so that the run's precision changes its forward passes only."""
    device_type = device.type if isinstance(device, torch.device) else str(device)
    with torch.autocast(device_type, enabled=False):
        yield


def as_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float32 when it is a lower-precision float (bfloat16, float16); otherwise ``t`` itself."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t
