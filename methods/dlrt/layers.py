"""One (T)DLRT layer class per structure, each owning its forward pass and its gradients from the captured pass:

- :class:`LinearLayer`: a linear layer ``W = U_0 C U_1^T`` (modes out, in);
- :class:`ConvMatrixLayer`: a conv kernel as the matrix (out, in*kh*kw), matrix DLRT of a conv;
- :class:`TuckerConvLayer`: a conv kernel as the Tucker tensor (out, in, kh, kw), TDLRT.

The gradients never form dL/dW for convs: ``A_i = Mat_i((dL/dW) x_{j != i} U_j^T)`` (``mode_grads``), the
K-gradients ``dL/dK_i = A_i Q_i`` (``k_grads``) and the core gradient at the augmented bases
(``augmented_core_grad``) are contractions of the captured input, contracted input and output gradient.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harness_methods.dlrt.algebra import fold, pair_channels, unfold
from harness_methods.dlrt.base import DLRTLayer

conv2d_weight = torch.nn.grad.conv2d_weight


class MatrixLayer(DLRTLayer):
    """d = 2: ``W = U_0 C U_1^T``. Building the dense weight costs ``n_o r_0 r_1 + n_o r_1 n_i`` once per forward,
    so a high rank and a small batch are cheaper factored."""

    def path_costs(self, r: list[int], per: int) -> dict[str, float]:
        n_o, n_i = self.n
        return {
            "factored": r[1] * (n_i + n_o) + n_o * r[0] * r[1] / per,
            "dense": n_o * n_i + n_o * r[1] * (r[0] + n_i) / per,
        }


class LinearLayer(MatrixLayer):
    """A DLRT linear layer (modes out, in)."""

    structure: ClassVar[str] = "linear"

    @classmethod
    def accepts(cls, module: nn.Module, tucker: bool) -> bool:
        return isinstance(module, nn.Linear)

    def contract(self, x: torch.Tensor, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        u0, u1 = self.factors
        if path == "dense":
            return F.linear(x, (u0 @ self.core) @ u1.T, self.bias), None
        x_t = x @ u1
        return F.linear(x_t, u0 @ self.core, self.bias), x_t

    def mode_grads(self, x: torch.Tensor, g_out: torch.Tensor, modes: list[int]) -> dict[int, torch.Tensor]:
        x_t = self.contracted
        g2 = g_out.reshape(-1, self.n[0])
        out: dict[int, torch.Tensor] = {}
        if 0 in modes:
            out[0] = g2.T @ x_t.reshape(-1, x_t.shape[-1])
        if 1 in modes:
            out[1] = x.reshape(-1, self.n[1]).T @ (g2 @ self.U0)
        return out

    def augmented_core_grad(self, x: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
        """``dL/dC~ = U~_0^T (dL/dW) U~_1`` from the first pass (its contracted input is in the old input basis,
        the first columns of the new one): augmentation leaves W unchanged, so this is exactly what a second
        forward/backward through the augmented layer gives."""
        u0, u1 = self.factors
        extra = u1[:, self.contracted.shape[-1] :]
        xt = torch.cat([self.contracted, x @ extra], -1).reshape(-1, u1.shape[1])
        return (g_out.reshape(-1, self.n[0]) @ u0).T @ xt


class ConvLayer(DLRTLayer):
    """What the conv structures share: stride, padding, dilation and the count of output positions."""

    kind: ClassVar[str] = "conv"

    def __init__(self, *args: Any, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        super().__init__(*args)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)

    @property
    def conv(self) -> dict[str, tuple]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @classmethod
    def layer_args(cls, module: nn.Module) -> dict[str, Any]:
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError("(T)DLRT supports convolutions with groups=1, zero padding given as numbers")
        return {"stride": module.stride, "padding": module.padding, "dilation": module.dilation}

    def positions(self, x: torch.Tensor) -> int:
        return x.shape[0] * x.shape[-2] * x.shape[-1] // max(self.stride[0] * self.stride[1], 1)

    def input_grad_basis(self, g_out: torch.Tensor) -> torch.Tensor:
        """dL/d(output before the last 1x1 conv with U_0): the output gradient in the output basis."""
        return F.conv2d(g_out, self.U0.T[:, :, None, None])


class ConvMatrixLayer(ConvLayer, MatrixLayer):
    """Matrix DLRT of a conv: the kernel as (out, in*kh*kw); forward a kh x kw conv with U_1^T, then a 1x1 conv
    with U_0 C."""

    structure: ClassVar[str] = "conv_matrix"

    @classmethod
    def accepts(cls, module: nn.Module, tucker: bool) -> bool:
        return isinstance(module, nn.Conv2d) and not tucker

    @classmethod
    def modes_of(cls, dense_shape: list[int]) -> list[int]:
        o, i, kh, kw = dense_shape
        return [o, i * kh * kw]

    def contract(self, x: torch.Tensor, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        u0, u1 = self.factors
        if path == "dense":
            return F.conv2d(x, (u0 @ self.core @ u1.T).reshape(self.dense_shape), self.bias, **self.conv), None
        x_t = F.conv2d(x, u1.T.reshape(-1, *self.dense_shape[1:]), None, **self.conv)
        return F.conv2d(x_t, (u0 @ self.core)[:, :, None, None], self.bias), x_t

    def mode_grads(self, x: torch.Tensor, g_out: torch.Tensor, modes: list[int]) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        if 0 in modes:
            out[0] = pair_channels(g_out, self.contracted)
        if 1 in modes:
            g_b = self.input_grad_basis(g_out)
            gw = conv2d_weight(x, (g_b.shape[1], *self.dense_shape[1:]), g_b, **self.conv)
            out[1] = gw.reshape(gw.shape[0], -1).T
        return out

    def augmented_core_grad(self, x: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
        u0, u1 = self.factors
        x_t = self.contracted
        extra = u1[:, x_t.shape[1] :]
        if extra.shape[1]:
            x_t = torch.cat([x_t, F.conv2d(x, extra.T.reshape(-1, *self.dense_shape[1:]), None, **self.conv)], 1)
        return u0.T @ pair_channels(g_out, x_t)


class TuckerConvLayer(ConvLayer):
    """TDLRT: the kernel as the Tucker tensor (out, in, kh, kw). Forward by one of four contraction orders
    (``path_costs``): ``factored`` (1x1 conv with U_1^T, core conv, 1x1 conv with U_0), ``merge_out`` (U_0 folded
    into the core conv), ``merge_in`` (U_1 folded into it) or ``dense``; a capturing pass needs the contracted
    input: factored or merge_out."""

    structure: ClassVar[str] = "conv_tucker"
    fmt: ClassVar[str] = "tucker"
    capture_paths: ClassVar[tuple[str, ...]] = ("factored", "merge_out")

    def __init__(self, *args: Any, **conv: Any):
        super().__init__(*args, **conv)
        self.g_basis: torch.Tensor | None = None  # the output gradient in the output basis, from k_grads
        # spatial modes that never change and whose bases are the identity: the core is the conv kernel
        self.fixed_spatial = all(
            not self.adaptive[k] and torch.equal(self.factors[k], torch.eye(self.n[k]).to(self.factors[k]))
            for k in (2, 3)
        )

    @classmethod
    def accepts(cls, module: nn.Module, tucker: bool) -> bool:
        return isinstance(module, nn.Conv2d) and tucker

    def spatial_kernel(self, core: torch.Tensor) -> torch.Tensor:
        """The conv kernel of a Tucker core: ``core x_2 U_2 x_3 U_3`` (the core itself for fixed identities)."""
        return core if self.fixed_spatial else torch.einsum("abhw,ph,qw->abpq", core, self.U2, self.U3)

    def spatial_grad(self, gk: torch.Tensor) -> torch.Tensor:
        """A gradient with respect to the conv kernel, taken back to the core: ``gk x_2 U_2^T x_3 U_3^T``."""
        return gk if self.fixed_spatial else torch.einsum("oahw,hp,wq->oapq", gk, self.U2, self.U3)

    def path_costs(self, r: list[int], per: int) -> dict[str, float]:
        n_o, n_i, kh, kw = self.dense_shape
        kk = kh * kw
        return {
            "factored": n_i * r[1] + r[0] * r[1] * kk + n_o * r[0],
            "merge_out": n_i * r[1] + n_o * r[1] * kk + n_o * r[0] * r[1] * kk / per,
            "merge_in": r[0] * n_i * kk + n_o * r[0] + r[0] * r[1] * n_i * kk / per,
            "dense": n_o * n_i * kk + (r[0] * r[1] + n_o * r[0]) * n_i * kk / per,
        }

    def contract(self, x: torch.Tensor, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        u0, u1 = self.U0, self.U1
        kcore = self.spatial_kernel(self.core)
        if path in ("merge_in", "dense"):
            kernel = torch.einsum("abhw,jb->ajhw", kcore, u1)
            if path == "dense":
                return F.conv2d(x, torch.einsum("ajhw,oa->ojhw", kernel, u0), self.bias, **self.conv), None
            return F.conv2d(F.conv2d(x, kernel, None, **self.conv), u0[:, :, None, None], self.bias), None
        x_t = F.conv2d(x, u1.T[:, :, None, None])
        if path == "merge_out":
            return F.conv2d(x_t, torch.einsum("abhw,oa->obhw", kcore, u0), self.bias, **self.conv), x_t
        return F.conv2d(F.conv2d(x_t, kcore, None, **self.conv), u0[:, :, None, None], self.bias), x_t

    def mode_grads(self, x: torch.Tensor, g_out: torch.Tensor, modes: list[int]) -> dict[int, torch.Tensor]:
        x_t = self.contracted
        o, i, kh, kw = self.dense_shape
        out: dict[int, torch.Tensor] = {}
        if 0 in modes:
            gw = conv2d_weight(x_t, (o, x_t.shape[1], kh, kw), g_out, **self.conv)
            out[0] = unfold(self.spatial_grad(gw), 0)
        if not any(k in modes for k in (1, 2, 3)):
            return out
        g_b = self.input_grad_basis(g_out)
        if 1 in modes:
            gw = conv2d_weight(x, (g_b.shape[1], i, kh, kw), g_b, **self.conv)
            out[1] = unfold(self.spatial_grad(gw), 1)
        if 2 in modes or 3 in modes:
            gk = conv2d_weight(x_t, (g_b.shape[1], x_t.shape[1], kh, kw), g_b, **self.conv)
            if 2 in modes:
                out[2] = unfold(torch.einsum("abhw,wq->abhq", gk, self.U3), 2)
            if 3 in modes:
                out[3] = unfold(torch.einsum("abhw,hp->abpw", gk, self.U2), 3)
        return out

    def k_grads(self, x: torch.Tensor, g_out: torch.Tensor, qs: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """For the channel modes the gradient of the layer written with ``K_i`` as its factor and
        ``fold_i(Q_i^T)`` as its core, at the cost of one core-sized convolution: mode 0 pairs the output gradient
        with ``conv(x_t, fold_0(Q_0^T))``, mode 1 pairs the input with the gradient pushed back through
        ``fold_1(Q_1^T)``; never forms the n_i-channel ``A_i``. The spatial modes use ``A_i`` of ``mode_grads``."""
        out = super().k_grads(x, g_out, {k: q for k, q in qs.items() if k not in (0, 1)})
        shape = self.ranks

        def kernel(k: int) -> torch.Tensor:
            q = qs[k]
            return self.spatial_kernel(fold(q.T, k, [q.shape[1] if j == k else s for j, s in enumerate(shape)]))

        if 0 in qs:
            out[0] = pair_channels(g_out, F.conv2d(self.contracted, kernel(0), None, **self.conv))
        if 1 in qs:
            e = kernel(1)
            self.g_basis = self.input_grad_basis(g_out)  # augmented_core_grad widens it to the augmented basis
            g_x = torch.nn.grad.conv2d_input((x.shape[0], e.shape[1], *x.shape[2:]), e, self.g_basis, **self.conv)
            out[1] = pair_channels(x, g_x)
        return out

    def augmented_core_grad(self, x: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
        u1 = self.U1
        x_t = self.contracted
        extra = u1[:, x_t.shape[1] :]
        if extra.shape[1]:
            x_t = torch.cat([x_t, F.conv2d(x, extra.T[:, :, None, None])], 1)
        g_b, self.g_basis = self.g_basis, None
        if g_b is None:
            g_b = self.input_grad_basis(g_out)
        elif g_b.shape[1] < self.U0.shape[1]:  # the old output basis's part from k_grads; the new columns here
            g_b = torch.cat([g_b, F.conv2d(g_out, self.U0[:, g_b.shape[1] :].T[:, :, None, None])], 1)
        kh, kw = self.dense_shape[2:]
        return self.spatial_grad(conv2d_weight(x_t, (g_b.shape[1], x_t.shape[1], kh, kw), g_b, **self.conv))
