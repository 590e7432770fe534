"""Tensor algebra of (T)DLRT as free functions: unfoldings, mode products, (truncated) HOSVD, the singular
vectors of unfoldings, basis augmentation and the truncation rank."""

from __future__ import annotations

import torch


def unfold(t: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` unfolding: (n_mode, product of the other sizes, in their original order)."""
    return t.movedim(mode, 0).reshape(t.shape[mode], -1)


def fold(m: torch.Tensor, mode: int, shape: list[int]) -> torch.Tensor:
    """Inverse of ``unfold``: the tensor of ``shape`` whose mode-``mode`` unfolding is ``m``."""
    rest = [s for j, s in enumerate(shape) if j != mode]
    return m.reshape(shape[mode], *rest).movedim(0, mode)


def mode_mul(t: torch.Tensor, m: torch.Tensor, mode: int) -> torch.Tensor:
    """``t x_mode m``: multiply mode ``mode`` of ``t`` by the matrix ``m`` (p x t.shape[mode])."""
    return torch.tensordot(m, t, dims=([1], [mode])).movedim(0, mode)


def multi_mode_mul(t: torch.Tensor, moves: dict[int, torch.Tensor]) -> torch.Tensor:
    """``t x_k moves[k]`` for every mode ``k`` of ``moves``, in its order."""
    for k, m in moves.items():
        t = mode_mul(t, m, k)
    return t


def pair_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum over batch and pixels of a[:, i] b[:, j]`` for (batch, channels, h, w) tensors: the weight gradient
    of a 1x1 convolution, which is how it is computed (faster than an einsum, which copies to transpose)."""
    return torch.nn.grad.conv2d_weight(b, (a.shape[1], b.shape[1], 1, 1), a)[:, :, 0, 0]


def padded(t: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """``t`` in the leading corner of a zero tensor of ``shape``."""
    out = t.new_zeros(shape)
    out[tuple(slice(0, s) for s in t.shape)] = t
    return out


def tail_rank(sigma: torch.Tensor, threshold: float) -> int:
    """Smallest r with ||sigma[r:]||_2 <= threshold (sigma sorted descending)."""
    tails = sigma.flip(0).square().cumsum(0).flip(0).sqrt()  # tails[r] = ||sigma[r:]||
    return int((tails > threshold).sum().item())


#: The smallest relative truncation tolerance (threshold / ||C||) at which a float32 core's Gram matrix is
#: eigen-decomposed in float32: its singular values are then off by about ``sqrt(eps32) ||C|| = 3.5e-4 ||C||`` and the
#: squared tail by about ``rows * eps32 ||C||^2``, a few percent of the squared threshold at this tolerance; below it,
#: and for float64 cores, the Gram matrix is formed and decomposed in float64.
GRAM_FLOAT32_MIN_TOL = 1e-2


def gram_dtype(m: torch.Tensor, tolerance: float) -> torch.dtype:
    """The precision a Gram eigen-decomposition of ``m`` needs for a truncation at relative ``tolerance``."""
    return torch.float32 if m.dtype == torch.float32 and tolerance >= GRAM_FLOAT32_MIN_TOL else torch.float64


def gram_left_singular(m: torch.Tensor, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Left singular vectors (all ``m.shape[0]``) and singular values (descending) of ``m`` from the
    eigen-decomposition of its Gram matrix ``m m^T`` in ``dtype``; in float64 where LAPACK's float32 solver does
    not converge (it can fail on the many repeated zero eigenvalues of a padded, augmented core)."""
    md = m.to(dtype)
    try:
        evals, evecs = torch.linalg.eigh(md @ md.T)
    except torch.linalg.LinAlgError:
        if dtype == torch.float64:
            raise
        return gram_left_singular(m, torch.float64)
    s = evals.flip(0).clamp_min(0).sqrt().to(m.dtype)
    return evecs.flip(1).to(m.dtype).contiguous(), s


def left_singular(m: torch.Tensor, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Left singular vectors (all ``m.shape[0]`` of them) and singular values (descending, padded with zeros)
    of a matrix. A wide matrix goes through the eigen-decomposition of its Gram matrix ``m m^T`` in ``dtype``
    (:func:`gram_dtype`): several times cheaper than an SVD for the wide unfoldings of a Tucker core, and accurate
    to about ``sqrt(eps) ||m||`` in the singular values."""
    rows, cols = m.shape
    if rows * 2 > cols:
        u, s, _ = torch.linalg.svd(m, full_matrices=True)
        return u, torch.cat([s, s.new_zeros(rows - s.shape[0])])
    return gram_left_singular(m, dtype)


def orthonormal(n: int, r: int, generator: torch.Generator | None, dtype=torch.float32) -> torch.Tensor:
    """A random n x r matrix with orthonormal columns (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, rr = torch.linalg.qr(torch.randn(n, r, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(rr))).to(dtype)


def hosvd(w: torch.Tensor, ranks: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Truncated HOSVD: leading left singular vectors of each unfolding; core ``w x_i U_i^T``."""
    factors = []
    for i, r in enumerate(ranks):
        m = unfold(w, i)
        u = torch.linalg.svd(m, full_matrices=r > min(m.shape))[0]
        factors.append(u[:, :r].contiguous())
    return multi_mode_mul(w, {i: u.T for i, u in enumerate(factors)}), factors


def augment_basis(u: torch.Tensor, k: torch.Tensor, cap: int) -> torch.Tensor:
    """``orth([U | K])`` with at most ``min(2 r, cap)`` columns (r = U's columns; ``cap`` at most the mode size),
    the old basis first: the first r columns are ``U`` itself (QR of orthonormal columns gives R_11 = diag(+-1),
    whose signs are undone). When the cap leaves room for fewer new directions than ``K`` brings, the new ones
    are the leading left singular vectors of K's part outside span(U) (its largest new directions; this does
    not depend on how K's columns are chosen, only on its span and scale)."""
    r = u.shape[1]
    new = min(2 * r, cap, u.shape[0], r + k.shape[1]) - r
    qa, ra = torch.linalg.qr(torch.cat([u, k], 1))
    sign = torch.sign(torch.diagonal(ra)[:r])
    sign[sign == 0] = 1
    out = qa[:, : r + new].clone()
    out[:, :r] *= sign
    rank_outside = min(k.shape[1], u.shape[0] - r)
    if 0 < new < rank_outside:  # the cap binds: K's part outside span(U) is qa[:, r:] ra[r:, r:]
        p = torch.linalg.svd(ra[r : r + rank_outside, r:])[0][:, :new]
        out[:, r:] = qa[:, r : r + rank_outside] @ p
    return out


def truncation_projections(
    c: torch.Tensor, threshold: float, adaptive: list[bool], r_min: list[int], r_max: list[int]
) -> dict[int, torch.Tensor]:
    """``P_k`` per adaptive mode of the core ``c``: the leading left singular vectors of ``Mat_k(c)``, as many as
    the smallest rank whose discarded singular values have 2-norm at most ``threshold``, clamped to
    ``[r_min[k], r_max[k]]``. A matrix adaptive in both modes has one rank: the eigen-decomposition of ``C C^T``
    gives the left projection and the rank, and the right one is an orthonormal basis of ``C^T P`` (it holds the
    rows of ``P^T C``, so ``P^T C Q Q^T = P^T C``: the truncated matrix is the best rank-r one, as from an SVD,
    with a core that need not be diagonal), at a fraction of an SVD's cost for the wide augmented cores."""
    norm = float(torch.linalg.vector_norm(c))
    dtype = gram_dtype(c, threshold / norm if norm > 0 else 0.0)
    if c.dim() == 2 and all(adaptive):
        p, s = gram_left_singular(c, dtype)
        r = min(max(tail_rank(s, threshold), r_min[0]), r_max[0], *c.shape)
        q, rr = torch.linalg.qr(c.T @ p[:, :r])
        sign = torch.sign(torch.diagonal(rr))
        sign[sign == 0] = 1
        return {0: p[:, :r], 1: q * sign}
    projs: dict[int, torch.Tensor] = {}
    for k in range(c.dim()):
        if adaptive[k]:
            p, s = left_singular(unfold(c, k), dtype)
            r = min(max(tail_rank(s, threshold), r_min[k]), r_max[k], c.shape[k])
            projs[k] = p[:, :r]
    return projs
