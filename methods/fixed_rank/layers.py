"""The layer modules of the fixed-rank formats: tltorch tensor layers (Tucker, CP, TT) and U V^T layers.

Every layer keeps what it replaced (dense shape and parameter count) and reports its ``LayerStats``. Linear
layers use the 2-way (matrix) form of each format, so a factorized linear layer is a rank-r matrix in every
format. ``implementation``: ``factorized`` contracts the input with the factors, ``reconstructed`` rebuilds
the dense weight each forward.
"""

from __future__ import annotations

from typing import Any

import tltorch
import torch
import torch.nn.functional as F
from torch import nn

from harness.layers import LayerStats


class _Reports:
    """Mixin: ``layer_stats`` for a factorized layer (dense shape/count set at construction), and what Frobenius
    decay needs: the factor parameters and the squared Frobenius norm of the weight they make."""

    fmt: str
    kind: str
    dense_shape: tuple[int, ...]
    dense_params: int
    ranks: list[int]
    implementation: str
    stats_extra: dict[str, Any]

    def layer_stats(self, name: str) -> LayerStats:
        n = sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]
        extra: dict[str, Any] = {"implementation": self.implementation, **self.stats_extra}
        return LayerStats(
            name, self.kind, list(self.dense_shape), self.dense_params, n, n, list(self.ranks), self.fmt, extra
        )

    def factor_parameters(self) -> list[nn.Parameter]:
        """The parameters of the factors (every parameter but the bias)."""
        bias = getattr(self, "bias", None)
        return [p for p in self.parameters() if p is not bias]  # type: ignore[attr-defined]

    def frobenius_sq(self) -> torch.Tensor:
        """``||W||_F^2`` of the weight the factors make (differentiable in the factors). Default: the weight
        rebuilt by tltorch."""
        return self.weight.to_tensor().square().sum()  # type: ignore[attr-defined]

    def _set_meta(
        self,
        fmt: str,
        kind: str,
        dense: nn.Module,
        ranks: list[int],
        implementation: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.fmt, self.kind, self.ranks, self.implementation = fmt, kind, list(ranks), implementation
        self.stats_extra = dict(extra or {})
        self.dense_shape = tuple(dense.weight.shape)
        self.dense_params = sum(p.numel() for p in dense.parameters(recurse=False))


def _tltorch_rank(ranks: list[int]) -> Any:
    """tltorch's ``rank`` argument: an int for a single rank (CP), else the tuple of ranks."""
    return ranks[0] if len(ranks) == 1 else tuple(ranks)


def _fold_cp_weights(t: tltorch.FactorizedTensor) -> None:
    """Make tltorch's CP weight vector a buffer of ones: the factors carry the scale (r * sum n_i params)."""
    if isinstance(t, tltorch.CPTensor):
        w = t.weights.detach()
        del t.weights
        t.register_buffer("weights", torch.ones_like(w))


class TensorConv2d(_Reports, tltorch.FactorizedConv):
    """A tltorch ``FactorizedConv`` (Tucker, CP or TT kernel) that reports its ``LayerStats``."""

    @classmethod
    def from_dense(
        cls, conv: nn.Conv2d, fmt: str, ranks: list[int], implementation: str, extra: dict[str, Any] | None = None
    ) -> TensorConv2d:
        """``fmt``: tltorch's factorization name (tucker, cp or tt), also the reported format."""
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            tuple(conv.kernel_size),
            stride=tuple(conv.stride),
            padding=tuple(conv.padding),
            dilation=tuple(conv.dilation),
            bias=conv.bias is not None,
            factorization=fmt,
            rank=_tltorch_rank(ranks),
            implementation=implementation,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        _fold_cp_weights(layer.weight)
        layer._set_meta(fmt, "conv", conv, ranks, implementation, extra)
        if conv.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(conv.bias)
        return layer

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, format={self.fmt}, "
            f"ranks={self.ranks}, implementation={self.implementation}"
        )


class TensorLinear(_Reports, nn.Module):
    """A linear layer whose (out, in) weight is a 2-way tltorch factorized tensor (Tucker, CP or TT).

    ``factorized``: the input is contracted with the factors (x V, then the core / weights, then U^T);
    ``reconstructed``: the dense weight is rebuilt each forward and applied with ``F.linear``.
    """

    def __init__(
        self, linear: nn.Linear, fmt: str, ranks: list[int], implementation: str, extra: dict[str, Any] | None = None
    ):
        super().__init__()
        out_f, in_f = linear.weight.shape
        self.weight = tltorch.FactorizedTensor.new(
            (out_f, in_f),
            rank=_tltorch_rank(ranks),
            factorization=fmt,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        _fold_cp_weights(self.weight)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.in_features, self.out_features = in_f, out_f
        self._set_meta(fmt, "linear", linear, ranks, implementation, extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.implementation == "reconstructed":
            return F.linear(x, w.to_tensor(), self.bias)
        if isinstance(w, tltorch.TuckerTensor):
            u, v = w.factors[0], w.factors[1]
            y = (x @ v) @ w.core.t() @ u.t()
        elif isinstance(w, tltorch.CPTensor):
            y = ((x @ w.factors[1]) * w.weights) @ w.factors[0].t()
        else:  # tensor train: cores (1, out, r), (r, in, 1)
            y = (x @ w.factors[1][:, :, 0].t()) @ w.factors[0][0].t()
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, format={self.fmt}, "
            f"ranks={self.ranks}, implementation={self.implementation}"
        )


class _UV(_Reports, nn.Module):
    """W = U V^T with the factors held by two modules ``v`` (applied first) and ``u`` (carries the bias)."""

    v: nn.Module
    u: nn.Module

    def _attach(self, dense: nn.Module, v: nn.Module, u: nn.Module, kind: str, implementation: str, fmt: str):
        self.v, self.u = v, u
        if dense.bias is not None:
            with torch.no_grad():
                self.u.bias.copy_(dense.bias)
        self._set_meta(fmt, kind, dense, [v.weight.shape[0]], implementation)

    def factor_parameters(self) -> list[nn.Parameter]:
        return [self.u.weight, self.v.weight]

    def frobenius_sq(self) -> torch.Tensor:
        """``||U V^T||_F^2 = sum((U^T U) * (V^T V))``: two r x r Gram matrices, never the product."""
        u, vt = self.u.weight.flatten(1), self.v.weight.flatten(1)  # (out, r), (r, in*kh*kw)
        return ((u.t() @ u) * (vt @ vt.t())).sum()

    def set_factors(self, u: torch.Tensor, v: torch.Tensor) -> None:
        """Set U (out, r) and V (in*kh*kw or in, r)."""
        with torch.no_grad():
            self.u.weight.copy_(u.reshape(self.u.weight.shape))
            self.v.weight.copy_(v.t().reshape(self.v.weight.shape))


class MatrixConv2d(_UV):
    """W = U V^T of the kernel reshaped to (out, in*kh*kw).

    ``factorized``: a conv with r output channels and the original kernel size, stride, padding and
    dilation (weight V^T reshaped to (r, in, kh, kw)), then a 1x1 conv (weight U) with the bias;
    ``reconstructed``: W rebuilt each forward and applied as one conv.
    """

    def __init__(self, conv: nn.Conv2d, rank: int, implementation: str, fmt: str):
        super().__init__()
        like = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        c = conv
        v = nn.Conv2d(c.in_channels, rank, c.kernel_size, c.stride, c.padding, c.dilation, bias=False, **like)
        u = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None, **like)
        self._attach(conv, v, u, "conv", implementation, fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.implementation == "reconstructed":
            w = (self.u.weight.flatten(1) @ self.v.weight.flatten(1)).reshape(self.dense_shape)
            return F.conv2d(x, w, self.u.bias, self.v.stride, self.v.padding, self.v.dilation)
        return self.u(self.v(x))


class MatrixLinear(_UV):
    """W = U V^T: ``Linear(in, r, bias=False)`` then ``Linear(r, out)`` (or W rebuilt: ``reconstructed``)."""

    def __init__(self, linear: nn.Linear, rank: int, implementation: str, fmt: str):
        super().__init__()
        out_f, in_f = linear.weight.shape
        like = {"device": linear.weight.device, "dtype": linear.weight.dtype}
        v = nn.Linear(in_f, rank, bias=False, **like)
        u = nn.Linear(rank, out_f, bias=linear.bias is not None, **like)
        self._attach(linear, v, u, "linear", implementation, fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.implementation == "reconstructed":
            return F.linear(x, self.u.weight @ self.v.weight, self.u.bias)
        return self.u(self.v(x))
