"""Dynamical low-rank training: matrix DLRT (``dlrt``) and geometry-aware Tucker training (``tdlrt``).

A factorized layer holds ``W = C x_1 U_1 ... x_d U_d`` with orthonormal bases ``U_i`` (n_i x r_i) and a core
``C``. Matrix DLRT is the d = 2 case of the same code: conv kernels are reshaped to (out, in*kh*kw), linear
weights are (out, in). TDLRT keeps conv kernels as 4-mode Tucker tensors (out, in, kh, kw).

One optimisation step on one batch (schedule ``every_step``):

1. basis step, all modes from one forward/backward: ``Mat_i(C)^T = Q_i R_i``, ``K_i = U_i R_i^T`` (W unchanged),
   ``dL/dK_i = A_i Q_i`` with ``A_i = Mat_i((dL/dW) x_{j != i} U_j^T)``, computed from the layer's captured
   activations and output gradient (never forming dL/dW for convs, never inverting ``R_i``; for the channel
   modes of a Tucker conv as the gradient of the layer with ``K_i`` as its factor, one core-sized convolution);
   plain SGD step on ``K_i``; augmentation ``U~_i = orth([U_i | K_i])`` with at most ``min(2 r_i, n_i)``
   columns; the core is carried over, ``C~ = C x_i (U~_i^T U_i)``, so the layer's function is unchanged;
2. Galerkin core step: SGD (with the suite's momentum, Nesterov and weight decay) on ``C~`` with the bases
   fixed, and the step of every non-factorized parameter through the torch optimizer. Its gradient at the
   augmented point is ``dL/dC~ = (dL/dW) x_i U~_i^T``: because augmentation leaves W (and so the loss on this
   batch) unchanged, dL/dW is the one of the first pass, and the same captured activations give it. This is
   exactly what a second forward/backward through the augmented layers would compute (a test checks it), at
   the price of one weight-gradient contraction per layer instead of a whole second pass;
3. truncation: HOSVD of ``C~``; per adaptive mode the smallest rank whose discarded singular values have 2-norm
   at most ``tau * ||C~||_F``, clamped to ``[r_min, r_max]``; ``U_i = U~_i P_i``, ``C = C~ x_i P_i^T``.

Optimizers (``training.optimizer``): SGD with momentum (default), Adam or AdamW act on the core and, through the
torch optimizer, on every non-factorized parameter. Their state is transported with the core: SGD's momentum and
Adam's first moment by the same matrices as the core (``x_i U~_i^T U_i`` on augmentation, ``x_i P_i^T`` on
truncation), Adam's second moment by their elementwise squares (non-negative; exact when the gradient's
coordinates are uncorrelated); Adam's step count carries on. The K-step is a plain gradient step: the augmented
span ``span[U_i | U_i S_i - lr dL/dK_i] = span[U_i | dL/dK_i]`` does not depend on its step size, so it needs no
optimizer state.

Initializations: ``random`` (orthonormal random bases, a Gaussian core scaled so that E||W||_F^2 matches
PyTorch's default dense init, hence the same output scale), ``decompose`` (truncated HOSVD / SVD of the dense
layer's default init), ``spectral`` (Khodak et al., ICLR 2021: split the singular values evenly between the
factors; with orthonormal Tucker bases all the scale sits in the core, so this is identical to ``decompose``).

Schedule ``amortized``: the basis step and augmentation happen once every ``amortize_steps`` batches; the other
batches take core-only steps in the augmented bases; truncation follows the last core step of the cycle (and
at the end of every epoch, so evaluation and the layer report always see a truncated layer).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from harness import LayerStats, Method, register_method
from harness.optim import build_optimizer
from harness.toolkit import replace_module, select_layers, single_threaded

# --------------------------------------------------------------------------------------------------------------
# tensor algebra


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


def left_singular(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left singular vectors (all ``m.shape[0]`` of them) and singular values (descending, padded with zeros)
    of a matrix. A wide matrix goes through the eigen-decomposition of its Gram matrix ``m m^T`` in float64:
    several times cheaper than an SVD for the wide unfoldings of a Tucker core, and accurate to about
    ``sqrt(eps64) ||m||`` in the singular values, far below any truncation tolerance."""
    rows, cols = m.shape
    if rows * 2 > cols:
        u, s, _ = torch.linalg.svd(m, full_matrices=True)
        return u, torch.cat([s, s.new_zeros(rows - s.shape[0])])
    m64 = m.double()
    evals, evecs = torch.linalg.eigh(m64 @ m64.T)
    s = evals.flip(0).clamp_min(0).sqrt().to(m.dtype)
    return evecs.flip(1).to(m.dtype).contiguous(), s


def orthonormal(n: int, r: int, generator: torch.Generator | None, dtype=torch.float32) -> torch.Tensor:
    q, rr = torch.linalg.qr(torch.randn(n, r, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(rr))).to(dtype)


def hosvd(w: torch.Tensor, ranks: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Truncated HOSVD: leading left singular vectors of each unfolding; core ``w x_i U_i^T``."""
    factors = []
    for i, r in enumerate(ranks):
        m = unfold(w, i)
        u = torch.linalg.svd(m, full_matrices=r > min(m.shape))[0]
        factors.append(u[:, :r].contiguous())
    core = w
    for i, u in enumerate(factors):
        core = mode_mul(core, u.T, i)
    return core, factors


# --------------------------------------------------------------------------------------------------------------
# the layer


class TuckerLayer(nn.Module):
    """A conv or linear layer ``W = C x_1 U_1 ... x_d U_d`` trained by (T)DLRT.

    ``structure``: ``linear`` (modes out, in), ``conv_matrix`` (modes out, in*kh*kw: matrix DLRT of a conv)
    or ``conv_tucker`` (modes out, in, kh, kw). The forward pass contracts the input with the factors
    (1x1 conv with U_in^T, core conv, 1x1 conv with U_out; for ``conv_matrix`` a kh x kw conv with V^T and a
    1x1 conv with U S). Bases are buffers, the core is an ``nn.Parameter``; their shapes change on
    augmentation and truncation.
    """

    def __init__(
        self,
        structure: str,
        dense_shape: list[int],
        core: torch.Tensor,
        factors: list[torch.Tensor],
        bias: torch.Tensor | None,
        adaptive: list[bool],
        r_min: list[int],
        r_max: list[int],
        stride=(1, 1),
        padding=(0, 0),
        dilation=(1, 1),
    ):
        super().__init__()
        if structure not in ("linear", "conv_matrix", "conv_tucker"):
            raise ValueError(f"unknown structure {structure!r}")
        self.structure = structure
        self.dense_shape = list(dense_shape)
        if structure == "conv_matrix":
            o, i, kh, kw = dense_shape
            self.n = [o, i * kh * kw]
        else:
            self.n = list(dense_shape)
        self.d = len(self.n)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.adaptive = list(adaptive)
        self.r_min, self.r_max = list(r_min), list(r_max)
        self.core = nn.Parameter(core.clone())
        for k, u in enumerate(factors):
            self.register_buffer(f"U{k}", u.clone().contiguous())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.register_buffer("core_momentum", None, persistent=False)  # SGD momentum, or Adam's first moment
        self.register_buffer("core_sq", None, persistent=False)  # Adam's second moment
        self.core_t = 0  # Adam's step count (bias correction)
        self.capture = False
        self.saved: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.augmented = False
        self.force_path: str | None = None  # tests: force one contraction order
        # spatial modes that never change and whose bases are the identity: the core is the conv kernel
        self.fixed_spatial = structure == "conv_tucker" and all(
            not adaptive[k] and torch.equal(factors[k], torch.eye(self.n[k]).to(factors[k])) for k in (2, 3)
        )

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        tucker: bool,
        ranks: list[int],
        adaptive: list[bool],
        r_min: list[int],
        r_max: list[int],
        initialization: str,
        generator: torch.Generator | None,
    ) -> TuckerLayer:
        w = module.weight.detach()
        bias = module.bias.detach() if module.bias is not None else None
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ValueError("(T)DLRT supports convolutions with groups=1, zero padding given as numbers")
            structure = "conv_tucker" if tucker else "conv_matrix"
            conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
        else:
            structure, conv = "linear", {}
        target = w if structure != "conv_matrix" else w.reshape(w.shape[0], -1)
        if initialization == "random":
            factors = [orthonormal(n, r, generator, w.dtype) for n, r in zip(target.shape, ranks, strict=True)]
            # PyTorch's default init: U(-b, b), b = 1/sqrt(fan_in) -> std 1/sqrt(3 fan_in). With orthonormal
            # bases ||W||_F = ||C||_F, so matching E||W||_F^2 gives the core's std.
            fan_in = target[0].numel()
            std = (1.0 / (3.0 * fan_in)) ** 0.5 * (w.numel() / float(torch.tensor(ranks).prod())) ** 0.5
            core = torch.randn(*ranks, generator=generator, dtype=torch.float64).to(w.dtype) * std
        else:  # "decompose" and "spectral" (identical for orthonormal bases: the scale lives in the core)
            with single_threaded():
                core, factors = hosvd(target.to(torch.float64), ranks)
            core, factors = core.to(w.dtype), [u.to(w.dtype) for u in factors]
        for k in range(len(factors)):  # a fixed full-rank mode: absorb its (orthogonal) basis, keep U_k = I
            if not adaptive[k] and factors[k].shape[0] == factors[k].shape[1]:
                core = mode_mul(core, factors[k], k)
                factors[k] = torch.eye(factors[k].shape[0], dtype=w.dtype)
        core, factors = core.to(w.device), [u.to(w.device) for u in factors]
        return cls(structure, list(w.shape), core, factors, bias, adaptive, r_min, r_max, **conv)

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def factors(self) -> list[torch.Tensor]:
        return [getattr(self, f"U{k}") for k in range(self.d)]

    @property
    def ranks(self) -> list[int]:
        return list(self.core.shape)

    def set_state(
        self,
        core: torch.Tensor,
        factors: list[torch.Tensor],
        momentum: torch.Tensor | None,
        sq: torch.Tensor | None = None,
    ) -> None:
        self.core = nn.Parameter(core.contiguous())
        for k, u in enumerate(factors):
            setattr(self, f"U{k}", u.contiguous())
        self.core_momentum = momentum
        self.core_sq = sq
        if momentum is None and sq is None:
            self.core_t = 0

    def _moved(self, c: torch.Tensor, moves: dict[int, torch.Tensor]) -> tuple:
        """Core and optimizer state in new bases: ``x_k M_k`` for the core and first moments; Adam's second
        moment (elementwise squares) by ``x_k (M_k * M_k)``, exact for a diagonal gradient covariance and
        always non-negative."""
        mom, sq = self.core_momentum, self.core_sq
        for k, m in moves.items():
            c = mode_mul(c, m, k)
            if mom is not None:
                mom = mode_mul(mom, m, k)
            if sq is not None:
                sq = mode_mul(sq, m * m, k)
        return c, mom, sq

    def dense_weight(self) -> torch.Tensor:
        w = self.core
        for k, u in enumerate(self.factors):
            w = mode_mul(w, u, k)
        return w.reshape(self.dense_shape)

    def spatial_kernel(self, core: torch.Tensor) -> torch.Tensor:
        """The conv kernel of a Tucker core: ``core x_2 U_2 x_3 U_3`` (the core itself when the spatial bases are
        fixed identities)."""
        if self.fixed_spatial:
            return core
        return torch.einsum("abhw,ph,qw->abpq", core, self.U2, self.U3)

    def spatial_grad(self, gk: torch.Tensor) -> torch.Tensor:
        """A gradient with respect to the conv kernel, taken back to the core: ``gk x_2 U_2^T x_3 U_3^T``."""
        if self.fixed_spatial:
            return gk
        return torch.einsum("oahw,hp,wq->oapq", gk, self.U2, self.U3)

    # -- forward ---------------------------------------------------------------------------------------------------
    def path(self, positions: int = 1) -> str:
        """How the forward pass contracts, the cheapest in multiply-adds for ``positions`` output positions
        (batch x output pixels): ``factored`` (1x1 in, core conv, 1x1 out), ``merge_out`` (U_out folded into
        the core conv), ``merge_in`` (U_in folded into it) or ``dense`` (the rebuilt weight). Building a merged
        or dense weight is paid once per forward, so it counts divided by ``positions``: a linear layer at a
        high rank and a small batch is cheaper factored. A capturing pass needs ``x_t``: factored or merge_out."""
        if self.force_path is not None:
            return self.force_path
        r = self.core.shape
        per = max(int(positions), 1)
        if self.structure in ("linear", "conv_matrix"):
            n_o, n_i = self.n
            costs = {
                "factored": r[1] * (n_i + n_o) + n_o * r[0] * r[1] / per,
                "dense": n_o * n_i + n_o * r[1] * (r[0] + n_i) / per,
            }
        else:
            n_o, n_i, kh, kw = self.dense_shape
            kk = kh * kw
            costs = {
                "factored": n_i * r[1] + r[0] * r[1] * kk + n_o * r[0],
                "merge_out": n_i * r[1] + n_o * r[1] * kk + n_o * r[0] * r[1] * kk / per,
                "merge_in": r[0] * n_i * kk + n_o * r[0] + r[0] * r[1] * n_i * kk / per,
                "dense": n_o * n_i * kk + (r[0] * r[1] + n_o * r[0]) * n_i * kk / per,
            }
        if self.capture:
            costs = {k: v for k, v in costs.items() if k in ("factored", "merge_out")}
        return min(costs, key=costs.get)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.factors
        c = self.core
        positions = x.shape[0] if self.structure == "linear" else x.shape[0] * x.shape[-2] * x.shape[-1] // max(
            self.stride[0] * self.stride[1], 1)
        path = self.path(positions)
        x_t = None
        if self.structure == "linear":
            if path == "dense":
                out = F.linear(x, (u[0] @ c) @ u[1].T, self.bias)
            else:
                x_t = x @ u[1]
                out = F.linear(x_t, u[0] @ c, self.bias)
        elif self.structure == "conv_matrix":
            conv = (self.stride, self.padding, self.dilation)
            if path == "dense":
                out = F.conv2d(x, (u[0] @ c @ u[1].T).reshape(self.dense_shape), self.bias, *conv)
            else:
                x_t = F.conv2d(x, u[1].T.reshape(-1, *self.dense_shape[1:]), None, *conv)
                out = F.conv2d(x_t, (u[0] @ c)[:, :, None, None], self.bias)
        else:
            conv = (self.stride, self.padding, self.dilation)
            kcore = self.spatial_kernel(c)
            if path in ("merge_in", "dense"):
                kernel = torch.einsum("abhw,jb->ajhw", kcore, u[1])
                if path == "dense":
                    out = F.conv2d(x, torch.einsum("ajhw,oa->ojhw", kernel, u[0]), self.bias, *conv)
                else:
                    out = F.conv2d(F.conv2d(x, kernel, None, *conv), u[0][:, :, None, None], self.bias)
            else:
                x_t = F.conv2d(x, u[1].T[:, :, None, None])
                if path == "merge_out":
                    out = F.conv2d(x_t, torch.einsum("abhw,oa->obhw", kcore, u[0]), self.bias, *conv)
                else:
                    y_t = F.conv2d(x_t, kcore, None, *conv)
                    out = F.conv2d(y_t, u[0][:, :, None, None], self.bias)
        if self.capture:
            assert x_t is not None
            self.saved = (x.detach(), x_t.detach(), out)
        return out

    # -- the basis step ------------------------------------------------------------------------------------------
    def mode_grads(self, g_out: torch.Tensor, modes: list[int]) -> dict[int, torch.Tensor]:
        """``A_i = Mat_i((dL/dW) x_{j != i} U_j^T)`` for ``modes``, from the captured input ``x``, the
        contracted input ``x_t`` and the output gradient ``g_out`` of the first pass."""
        assert self.saved is not None, "mode_grads needs a captured forward pass"
        x, x_t, _ = self.saved
        u = self.factors
        out: dict[int, torch.Tensor] = {}
        if not modes:
            return out
        if self.structure == "linear":
            x2, xt2 = x.reshape(-1, self.n[1]), x_t.reshape(-1, x_t.shape[-1])
            g2 = g_out.reshape(-1, self.n[0])
            if 0 in modes:
                out[0] = g2.T @ xt2
            if 1 in modes:
                out[1] = x2.T @ (g2 @ u[0])
            return out
        conv = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
        g_b = F.conv2d(g_out, u[0].T[:, :, None, None])  # dL/d(output before the last 1x1 conv)
        o, i, kh, kw = self.dense_shape
        if self.structure == "conv_matrix":
            if 0 in modes:
                out[0] = pair_channels(g_out, x_t)
            if 1 in modes:
                gw = torch.nn.grad.conv2d_weight(x, (g_b.shape[1], i, kh, kw), g_b, **conv)
                out[1] = gw.reshape(gw.shape[0], -1).T
            return out

        if 0 in modes:
            gw = torch.nn.grad.conv2d_weight(x_t, (o, x_t.shape[1], kh, kw), g_out, **conv)
            out[0] = unfold(self.spatial_grad(gw), 0)
        if 1 in modes:
            gw = torch.nn.grad.conv2d_weight(x, (g_b.shape[1], i, kh, kw), g_b, **conv)
            out[1] = unfold(self.spatial_grad(gw), 1)
        if 2 in modes or 3 in modes:
            gk = torch.nn.grad.conv2d_weight(x_t, (g_b.shape[1], x_t.shape[1], kh, kw), g_b, **conv)
            if 2 in modes:
                out[2] = unfold(torch.einsum("abhw,wq->abhq", gk, u[3]), 2)
            if 3 in modes:
                out[3] = unfold(torch.einsum("abhw,hp->abpw", gk, u[2]), 3)
        return out

    def k_grads(self, g_out: torch.Tensor, qs: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """``dL/dK_i = A_i Q_i`` for the modes in ``qs`` (``Mat_i(C)^T = Q_i R_i``), from the captured pass.

        For the channel modes of a Tucker conv it is the gradient of the layer written with ``K_i`` as its
        factor and ``fold_i(Q_i^T)`` as its core, at the cost of one core-sized convolution: mode 0 pairs the
        output gradient with ``conv(x_t, fold_0(Q_0^T))``, mode 1 pairs the input with the gradient pushed back
        through ``fold_1(Q_1^T)``. Never forms ``A_i`` there (an ``n_i``-channel weight gradient); other modes
        and structures use ``A_i`` from ``mode_grads``."""
        assert self.saved is not None, "k_grads needs a captured forward pass"
        x, x_t, _ = self.saved
        out: dict[int, torch.Tensor] = {}
        fast = (0, 1) if self.structure == "conv_tucker" else ()
        rest = [k for k in qs if k not in fast]
        if rest:
            out = {k: a @ qs[k] for k, a in self.mode_grads(g_out, rest).items()}
        if not any(k in qs for k in fast):
            return out
        u = self.factors
        conv = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
        shape = self.ranks

        def kernel(k: int) -> torch.Tensor:
            q = qs[k]
            return self.spatial_kernel(fold(q.T, k, [q.shape[1] if j == k else s for j, s in enumerate(shape)]))

        if 0 in qs:
            y = F.conv2d(x_t, kernel(0), None, **conv)
            out[0] = pair_channels(g_out, y)
        if 1 in qs:
            g_b = F.conv2d(g_out, u[0].T[:, :, None, None])
            e = kernel(1)
            g_x = torch.nn.grad.conv2d_input((x.shape[0], e.shape[1], *x.shape[2:]), e, g_b, **conv)
            out[1] = pair_channels(x, g_x)
        return out

    def augmented_core_grad(self, x: torch.Tensor, x_t: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
        """``dL/dC~ = (dL/dW) x_i U~_i^T`` at the current (augmented) bases from the captured pass's input
        ``x``, contracted input ``x_t`` (in the bases before augmentation, which are the first columns of the
        new ones) and output gradient. Augmentation leaves ``W`` unchanged, so this is exactly the gradient a
        second forward/backward through the augmented layer would give on the same batch."""
        u = self.factors
        r_old = x_t.shape[-1] if self.structure == "linear" else x_t.shape[1]
        extra = u[1][:, r_old:]
        if self.structure == "linear":
            xt = torch.cat([x_t, x @ extra], -1).reshape(-1, u[1].shape[1])
            return (g_out.reshape(-1, self.n[0]) @ u[0]).T @ xt
        conv = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
        if self.structure == "conv_matrix":
            if extra.shape[1]:
                x_t = torch.cat([x_t, F.conv2d(x, extra.T.reshape(-1, *self.dense_shape[1:]), None, **conv)], 1)
            return u[0].T @ pair_channels(g_out, x_t)
        if extra.shape[1]:
            x_t = torch.cat([x_t, F.conv2d(x, extra.T[:, :, None, None])], 1)
        g_b = F.conv2d(g_out, u[0].T[:, :, None, None])
        kh, kw = self.dense_shape[2:]
        gw = torch.nn.grad.conv2d_weight(x_t, (g_b.shape[1], x_t.shape[1], kh, kw), g_b, **conv)
        return self.spatial_grad(gw)

    def augmentable_modes(self) -> list[int]:
        return [k for k in range(self.d) if self.adaptive[k] and self.core.shape[k] < self.n[k]]

    @torch.no_grad()
    def basis_step(self, g_out: torch.Tensor | None, lr: float) -> None:
        """K-step on every augmentable mode (plain SGD), augmentation, Galerkin carry-over of the core, and the
        core's gradient at the augmented bases (``core.grad``, for the core step that follows)."""
        assert self.saved is not None, "basis_step needs a captured forward pass"
        x, x_t, _ = self.saved
        c = self.core.detach()
        modes = self.augmentable_modes() if g_out is not None else []
        with single_threaded():
            qrs = {k: torch.linalg.qr(unfold(c, k).T) for k in modes}  # Mat_k(C)^T = Q R: S_k = R^T
        grads = self.k_grads(g_out, {k: q for k, (q, _) in qrs.items()}) if modes else {}
        self.saved = None
        factors = list(self.factors)
        with single_threaded():
            self._augment(factors, qrs, grads, lr)
        # U~_k = [U_k | new columns], so U~_k^T U_k = [I; 0]: the core and the optimizer state carried over to
        # the new bases are the old ones padded with zeros (exact, and free)
        shape = [u.shape[1] for u in factors]
        c, mom, sq = (None if t is None else padded(t, shape) for t in (c, self.core_momentum, self.core_sq))
        self.set_state(c, factors, mom, sq)
        self.augmented = True
        if g_out is not None:
            self.core.grad = self.augmented_core_grad(x, x_t, g_out)

    def _augment(self, factors: list[torch.Tensor], qrs: dict, grads: dict[int, torch.Tensor], lr: float) -> None:
        """K-step and basis augmentation per mode, in place in ``factors``: ``U~_k = [U_k | U_k^perp]``, the
        old basis (re-orthonormalized) first."""
        for k, g in grads.items():
            r = qrs[k][1]
            u = factors[k]
            knew = u @ r.T - lr * g  # K_k = U_k S_k, one SGD step
            m = min(2 * u.shape[1], self.n[k], u.shape[1] + knew.shape[1])
            qa, ra = torch.linalg.qr(torch.cat([u, knew], 1))
            sign = torch.sign(torch.diagonal(ra)[: u.shape[1]])
            sign[sign == 0] = 1
            qa = qa[:, :m].clone()
            qa[:, : u.shape[1]] *= sign  # the first columns are U_k itself (R_11 = diag(+-1))
            factors[k] = qa

    # -- the core step -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def core_step_adam(
        self, lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0, decoupled: bool = False
    ) -> None:
        """Adam (``decoupled``: AdamW) on the core, as torch.optim.Adam/AdamW compute it."""
        g = self.core.grad
        if g is None:
            return
        c = self.core
        if weight_decay and decoupled:
            c.mul_(1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * c
        b1, b2 = betas
        if self.core_momentum is None or self.core_sq is None:
            self.core_momentum, self.core_sq, self.core_t = torch.zeros_like(c), torch.zeros_like(c), 0
        self.core_t += 1
        self.core_momentum.lerp_(g, 1 - b1)
        self.core_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.core_sq / (1 - b2**self.core_t)).sqrt_().add_(eps)
        c.addcdiv_(self.core_momentum, denom, value=-lr / (1 - b1**self.core_t))
        c.grad = None

    @torch.no_grad()
    def core_step(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        g = self.core.grad
        if g is None:
            return
        c = self.core
        if weight_decay:
            g = g + weight_decay * c
        if momentum:
            if self.core_momentum is None:
                self.core_momentum = g.clone()
            else:
                self.core_momentum.mul_(momentum).add_(g)
            g = g + momentum * self.core_momentum if nesterov else self.core_momentum
        c.add_(g, alpha=-lr)
        c.grad = None

    # -- truncation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def truncate(self, tau: float) -> None:
        """HOSVD truncation of the core in every adaptive mode."""
        c = self.core.detach()
        thr = tau * float(torch.linalg.vector_norm(c))
        with single_threaded():
            projs = self._projections(c, thr)
        factors = list(self.factors)
        for k, p in projs.items():
            factors[k] = factors[k] @ p
        new, mom, sq = self._moved(c, {k: p.T for k, p in projs.items()})
        self.set_state(new, factors, mom, sq)
        self.augmented = False

    def _projections(self, c: torch.Tensor, thr: float) -> dict[int, torch.Tensor]:
        """P_k per adaptive mode: leading left singular vectors of Mat_k(C~), rank by the tail tolerance."""
        projs: dict[int, torch.Tensor] = {}
        if self.d == 2 and all(self.adaptive):  # a matrix: one SVD, one rank for both modes
            p, s, vh = torch.linalg.svd(c, full_matrices=False)
            r = min(max(tail_rank(s, thr), self.r_min[0]), self.r_max[0], s.shape[0])
            return {0: p[:, :r], 1: vh[:r].T}
        for k in range(self.d):
            if not self.adaptive[k]:
                continue
            p, s = left_singular(unfold(c, k))
            r = min(max(tail_rank(s, thr), self.r_min[k]), self.r_max[k], c.shape[k])
            projs[k] = p[:, :r]
        return projs

    # -- report --------------------------------------------------------------------------------------------------
    def layer_stats(self, name: str) -> LayerStats:
        ranks = self.ranks  # mid-cycle (amortized schedule) these are the augmented ranks
        nb = self.bias.numel() if self.bias is not None else 0
        dense = int(torch.tensor(self.dense_shape).prod()) + nb
        params = sum(n * r for n, r in zip(self.n, ranks, strict=True)) + int(torch.tensor(ranks).prod()) + nb
        aug, k_params = [], 0
        for k, (n, r) in enumerate(zip(self.n, ranks, strict=True)):
            if self.adaptive[k] and r < n and not self.augmented:
                aug.append(min(2 * r, n))
                k_params += n * r
            else:
                aug.append(r)
        train = sum(n * a for n, a in zip(self.n, aug, strict=True)) + int(torch.tensor(aug).prod()) + k_params + nb
        kind = "linear" if self.structure == "linear" else "conv"
        fmt = "tucker" if self.structure == "conv_tucker" else "matrix"
        extra: dict[str, Any] = {"modes": self.n, "adaptive": self.adaptive, "r_max": self.r_max}
        return LayerStats(name, kind, self.dense_shape, dense, params, train, ranks, fmt, extra)

    def extra_repr(self) -> str:
        return f"{self.structure}, shape={self.dense_shape}, ranks={self.ranks}"


# --------------------------------------------------------------------------------------------------------------
# the methods

RankSpec = int | float


class DLRTParams(BaseModel):
    """Parameters of ``dlrt`` and ``tdlrt``."""

    model_config = ConfigDict(extra="forbid")

    tau: float = Field(0.1, ge=0, description="relative truncation tolerance: discarded tail <= tau * ||C~||_F")
    r_max: RankSpec = Field(
        0.5, gt=0, description="rank cap of channel modes: a float in (0, 1] is a fraction of n_i, an int absolute"
    )
    r_min: int = Field(2, ge=1, description="rank floor of adaptive modes (capped at the mode size)")
    initial_rank: RankSpec | Literal["full"] = Field(
        "full", description="initial rank of adaptive modes: int, fraction of n_i, or 'full' (= r_max)"
    )
    adaptive_modes: Literal["channels", "all"] = Field(
        "channels", description="'channels': spatial modes of Tucker convs stay at full rank kh, kw"
    )
    schedule: Literal["every_step", "amortized"] = "every_step"
    amortize_steps: int = Field(10, ge=1, description="amortized: one basis step and truncation per this many batches")
    layers: list[str] | None = Field(None, description="layer-name patterns; default: all but first conv, last linear")

    @field_validator("r_max", "initial_rank")
    @classmethod
    def _fraction_or_count(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError(f"a fractional rank must be in (0, 1] (an int is an absolute rank), got {v}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a rank must be at least 1, got {v}")
        return v


def _resolve(spec: RankSpec, n: int) -> int:
    if isinstance(spec, float):
        if spec > 1:
            raise ValueError(f"a fractional rank must be in (0, 1], got {spec}")
        return max(1, int(spec * n))
    return max(1, min(int(spec), n))


class _DLRTBase(Method):
    Params: ClassVar[type[BaseModel]] = DLRTParams
    initializations: ClassVar[tuple[str, ...]] = ("random", "decompose", "spectral")
    tucker: ClassVar[bool] = False

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, initialization: str = "default"):
        super().__init__(params, initialization)
        self._phase = 0  # batches taken in the open cycle (0: the next batch takes a basis step)
        self._layers: list[TuckerLayer] = []
        self._layers_of: int | None = None

    # -- setup ---------------------------------------------------------------------------------------------------
    def layer_config(self, module: nn.Module) -> tuple[list[int], list[bool], list[int], list[int]]:
        """Initial ranks, adaptivity, rank floors and caps of the modes of ``module``'s factorization."""
        p: DLRTParams = self.params  # type: ignore[assignment]
        w = module.weight
        if isinstance(module, nn.Conv2d) and self.tucker:
            n = list(w.shape)
            channel = [True, True, False, False]
        elif isinstance(module, nn.Conv2d):
            n = [w.shape[0], w[0].numel()]
            channel = [True, True]
        else:
            n = list(w.shape)
            channel = [True, True]
        adaptive = [c or p.adaptive_modes == "all" for c in channel]
        if len(n) == 2:  # a matrix has one rank: caps and floors from the smaller side, tied in both modes
            ref = [min(n)] * 2
        else:
            ref = n
        r_max = [_resolve(p.r_max, ref[k]) if channel[k] else n[k] for k in range(len(n))]
        r_min = [min(p.r_min, r_max[k]) if adaptive[k] else n[k] for k in range(len(n))]
        ranks = []
        for k in range(len(n)):
            if not adaptive[k]:
                ranks.append(n[k])
            elif p.initial_rank == "full":
                ranks.append(r_max[k])
            else:
                ranks.append(min(max(_resolve(p.initial_rank, ref[k]), r_min[k]), r_max[k]))
        return ranks, adaptive, r_min, r_max

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        modules = dict(model.named_modules())
        for name in select_layers(model, self.params.layers):
            module = modules[name]
            ranks, adaptive, r_min, r_max = self.layer_config(module)
            layer = TuckerLayer.from_module(
                module, self.tucker, ranks, adaptive, r_min, r_max, self.initialization, generator
            )
            replace_module(model, name, layer)
        self._layers_of = None
        return model

    def make_optimizer(self, model: nn.Module, training: Any) -> torch.optim.Optimizer:
        cores = {id(m.core) for m in model.modules() if isinstance(m, TuckerLayer)}
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in cores]
        if not dense:  # a model made only of factorized layers: the optimizer still carries the step size
            dense = [nn.Parameter(torch.zeros(0))]
        return build_optimizer(dense, training)

    def tucker_layers(self, model: nn.Module) -> list[TuckerLayer]:
        if self._layers_of != id(model):
            self._layers = [m for m in model.modules() if isinstance(m, TuckerLayer)]
            self._layers_of = id(model)
        return self._layers

    # -- one step ------------------------------------------------------------------------------------------------
    def train_step(self, model, optimizer, batch, loss_fn) -> torch.Tensor:
        p: DLRTParams = self.params  # type: ignore[assignment]
        x, y = batch
        layers = self.tucker_layers(model)
        group = optimizer.param_groups[0]
        lr = group["lr"]
        optimizer.zero_grad(set_to_none=True)
        if self._phase == 0 and layers:
            # one forward/backward serves the basis step and the core step: the output gradients of the
            # factorized layers and the gradients of every non-factorized parameter
            for layer in layers:
                layer.capture = True
            try:
                loss = loss_fn(model(x), y)
            finally:
                for layer in layers:
                    layer.capture = False
            outs = [layer.saved[2] for layer in layers]  # type: ignore[index]
            dense = [q for pg in optimizer.param_groups for q in pg["params"] if q.requires_grad]
            grads = torch.autograd.grad(loss, outs + dense, allow_unused=True)
            for q, g in zip(dense, grads[len(outs) :], strict=True):
                q.grad = g
            for layer, g in zip(layers, grads[: len(outs)], strict=True):
                layer.basis_step(g, lr)  # sets the core's gradient at the augmented bases
        else:  # a core-only step (amortized schedule, mid-cycle) at the current bases
            loss = loss_fn(model(x), y)
            loss.backward()
        optimizer.step()
        wd = group.get("weight_decay", 0.0)
        if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
            decoupled = isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay"))
            for layer in layers:
                layer.core_step_adam(lr, group["betas"], group["eps"], wd, decoupled)
        else:
            for layer in layers:
                layer.core_step(lr, group.get("momentum", 0.0), wd, group.get("nesterov", False))
        self._phase += 1
        if self._phase >= (p.amortize_steps if p.schedule == "amortized" else 1):
            self.truncate(layers)
        return loss.detach()

    def truncate(self, layers: list[TuckerLayer]) -> None:
        for layer in layers:
            layer.truncate(self.params.tau)
        self._phase = 0

    def end_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        if self._phase:
            self.truncate(self.tucker_layers(model))


@register_method("dlrt")
class DLRTMethod(_DLRTBase):
    """Matrix DLRT: rank-adaptive U S V^T layers (conv kernels as (out, in*kh*kw)) trained by basis/core steps."""

    tucker = False


@register_method("tdlrt")
class TDLRTMethod(_DLRTBase):
    """TDLRT: rank-adaptive Tucker conv kernels (and U S V^T linear layers) trained by basis/core steps."""

    tucker = True
