"""Tensor algebra of the fixed-rank formats, as free functions: balancing decomposed factors (the
``spectral`` initializations) and copying factors into a layer."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorly as tl
import torch
from tensorly.cp_tensor import cp_normalize


def prod(xs) -> int:
    """Product of a sequence of ints (1 for an empty one), without overflow in numpy's default int."""
    return int(np.prod(list(xs), dtype=np.int64)) if len(xs) else 1


def copy_factors(dst_factors: Iterable[torch.Tensor], src_factors: Iterable[torch.Tensor]) -> None:
    """Copy each source factor into the matching layer factor (reshaped to its shape), without autograd."""
    with torch.no_grad():
        for d, s in zip(dst_factors, src_factors, strict=True):
            d.copy_(s.reshape(d.shape))


def balanced_tucker(core: torch.Tensor, factors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Split each mode's HOSVD singular values (the norms of the core's mode-i slices) as square roots
    between the factor and the core. The reconstruction is unchanged; for a matrix (U, diag(S), V) this
    gives (U S^1/2, I, V S^1/2)."""
    scales = []
    for i in range(core.ndim):
        s = tl.unfold(core, i).norm(dim=1)
        scales.append(s.clamp_min(float(s.max()) * 1e-6 + 1e-30).sqrt())
    out = core
    for i, s in enumerate(scales):
        shape = [1] * core.ndim
        shape[i] = -1
        out = out / s.reshape(shape)
    return out, [f * s for f, s in zip(factors, scales, strict=True)]


def balanced_cp(cp) -> list[torch.Tensor]:
    """CP factors with each component's weight lambda_k split evenly as lambda_k^(1/d) over its d factors
    (unit-norm columns times lambda_k^(1/d)); the reconstruction is unchanged."""
    weights, factors = cp_normalize(cp)
    split = weights.abs().clamp_min(1e-30) ** (1.0 / len(factors))
    factors = [f * split for f in factors]
    factors[0] = factors[0] * torch.sign(weights)
    return factors


def balanced_tt(cores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Bring a tensor train to the form where each bond's singular values are split as square roots
    between its two cores (Vidal's canonical form, Gamma-Lambda, with Lambda^1/2 on each side). The
    reconstruction is unchanged; for two cores (U S V^T) this gives (U S^1/2, S^1/2 V^T)."""
    cores = [c.clone() for c in cores]
    d = len(cores)
    # right-orthogonalize cores 1..d-1
    for k in range(d - 1, 0, -1):
        r0, n, r1 = cores[k].shape
        q, rr = torch.linalg.qr(cores[k].reshape(r0, n * r1).t())
        cores[k] = q.t().reshape(-1, n, r1)
        cores[k - 1] = torch.einsum("anb,cb->anc", cores[k - 1], rr)
    # left-to-right SVD sweep: left-orthonormal cores A_k and the bond singular values S_k
    out, s_prev = [], torch.ones(1, dtype=cores[0].dtype, device=cores[0].device)
    for k in range(d - 1):
        r0, n, r1 = cores[k].shape
        u, s, vh = torch.linalg.svd(cores[k].reshape(r0 * n, r1), full_matrices=False)
        s = s.clamp_min(float(s.max()) * 1e-6 + 1e-30)
        a = u.reshape(r0, n, -1)
        cores[k + 1] = torch.einsum("ab,bnc->anc", s[:, None] * vh, cores[k + 1])
        out.append(a * s_prev.rsqrt()[:, None, None] * s.sqrt()[None, None, :])
        s_prev = s
    out.append(cores[-1] * s_prev.rsqrt()[:, None, None])
    return out
