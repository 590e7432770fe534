"""The shared base of the (T)DLRT layers: ``W = C x_1 U_1 ... x_d U_d`` with orthonormal bases ``U_k`` (buffers)
and a core ``C`` (an ``nn.Parameter`` of the method's torch optimizer), the basis step (K-step, augmentation,
Galerkin carry-over of the core), truncation, and the layer's report. One subclass per structure
(``methods/dlrt/layers.py``) owns the forward pass and the gradients from the captured pass."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from harness import LayerStats
from harness.toolkit import (
    Transport,
    as_float32,
    full_precision,
    moment_transport,
    reshape_parameter,
    single_threaded,
)
from harness_methods.dlrt.algebra import (
    augment_basis,
    hosvd,
    mode_mul,
    multi_mode_mul,
    orthonormal,
    padded,
    truncation_projections,
    unfold,
)
from harness_methods.dlrt.budget import training_parameters

_STRUCTURES: list[type[DLRTLayer]] = []


def initial_decomposition(
    target: torch.Tensor, ranks: list[int], adaptive: list[bool], initialization: str, generator: torch.Generator | None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Core and bases of the layer that replaces the dense weight ``target`` (in the layer's modes).

    ``random``: orthonormal random bases and a Gaussian core scaled so that E||W||_F^2 matches PyTorch's default
    dense init (U(-b, b), b = 1/sqrt(fan_in): std 1/sqrt(3 fan_in); with orthonormal bases ||W||_F = ||C||_F);
    ``decompose`` and ``spectral`` (identical for orthonormal bases, the scale lives in the core): truncated
    HOSVD of ``target``. A fixed full-rank mode absorbs its (orthogonal) basis into the core and keeps U_k = I.
    """
    dtype = target.dtype
    if initialization == "random":
        factors = [orthonormal(n, r, generator, dtype) for n, r in zip(target.shape, ranks, strict=True)]
        fan_in = target[0].numel()
        std = (1.0 / (3.0 * fan_in)) ** 0.5 * (target.numel() / float(torch.tensor(ranks).prod())) ** 0.5
        core = torch.randn(*ranks, generator=generator, dtype=torch.float64).to(dtype) * std
    else:
        with single_threaded():
            core, factors = hosvd(target.to(torch.float64), ranks)
        core, factors = core.to(dtype), [u.to(dtype) for u in factors]
    for k in range(len(factors)):
        if not adaptive[k] and factors[k].shape[0] == factors[k].shape[1]:
            core = mode_mul(core, factors[k], k)
            factors[k] = torch.eye(factors[k].shape[0], dtype=dtype)
    return core.to(target.device), [u.to(target.device) for u in factors]


def moves_transport(moves: dict[int, torch.Tensor]) -> Transport:
    """Optimizer state in new bases: ``x_k M_k`` for momenta and first moments, like the core; Adam's second
    moments (elementwise squares) by ``x_k (M_k * M_k)``, exact for a diagonal gradient covariance and always
    non-negative."""
    squares = {k: m * m for k, m in moves.items()}
    return moment_transport(partial(multi_mode_mul, moves=moves), partial(multi_mode_mul, moves=squares))


class DLRTLayer(nn.Module):
    """A layer ``W = C x_1 U_1 ... x_d U_d`` trained by (T)DLRT; the shapes of ``C`` and ``U_k`` change on
    augmentation and truncation, and the core's optimizer state moves with them (``harness.toolkit``).

    A subclass sets ``structure`` (its name), ``kind``/``fmt`` (for the report), the paths a capturing forward
    may take, and implements ``accepts``, ``path_costs``, ``contract``, ``mode_grads`` and
    ``augmented_core_grad``; ``modes_of``, ``positions``, ``layer_args`` and ``k_grads`` have defaults.
    """

    structure: ClassVar[str] = ""
    kind: ClassVar[str] = "linear"
    fmt: ClassVar[str] = "matrix"
    capture_paths: ClassVar[tuple[str, ...]] = ("factored",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.structure:
            _STRUCTURES.append(cls)

    def __init__(
        self,
        dense_shape: list[int],
        core: torch.Tensor,
        factors: list[torch.Tensor],
        bias: torch.Tensor | None,
        adaptive: list[bool],
        r_min: list[int],
        r_max: list[int],
        a_max: list[int] | None = None,
    ):
        super().__init__()
        self.dense_shape = list(dense_shape)
        self.n = self.modes_of(self.dense_shape)
        self.d = len(self.n)
        self.adaptive = list(adaptive)
        self.r_min, self.r_max = list(r_min), list(r_max)
        self.a_max = [min(a, n) for a, n in zip(a_max or self.n, self.n, strict=True)]  # augmentation caps
        self.core = nn.Parameter(core.clone())
        for k, u in enumerate(factors):
            self.register_buffer(f"U{k}", u.clone().contiguous())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.capturing = False  # set by harness.toolkit.Capture: keep the contracted input
        self.contracted: torch.Tensor | None = None  # input in the input basis, from the last capturing pass
        self.augmented = False
        self.force_path: str | None = None  # tests: force one contraction order

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def accepts(cls, module: nn.Module, tucker: bool) -> bool:
        return False

    @classmethod
    def modes_of(cls, dense_shape: list[int]) -> list[int]:
        """The sizes of the factorized modes of a dense weight of ``dense_shape``."""
        return list(dense_shape)

    @classmethod
    def layer_args(cls, module: nn.Module) -> dict[str, Any]:
        """Constructor arguments of the structure taken from the dense module (e.g. a conv's stride)."""
        return {}

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
        a_max: list[int] | None = None,
    ) -> DLRTLayer:
        """The layer replacing the dense ``module`` (the structure that accepts it: ``tucker`` picks Tucker
        tensors for convs), initialized by ``initialization``."""
        layer_cls = next(c for c in [cls, *_STRUCTURES] if c.accepts(module, tucker))
        w = module.weight.detach()
        target = w.reshape(layer_cls.modes_of(list(w.shape)))
        core, factors = initial_decomposition(target, ranks, adaptive, initialization, generator)
        bias = module.bias.detach() if module.bias is not None else None
        args = layer_cls.layer_args(module)
        return layer_cls(list(w.shape), core, factors, bias, adaptive, r_min, r_max, a_max, **args)

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
        optimizer: torch.optim.Optimizer | None = None,
        transport: Transport | None = None,
    ) -> None:
        """New core (a new parameter, in ``optimizer`` too, its state moved by ``transport``) and bases."""
        reshape_parameter(self, "core", core, optimizer, transport)
        for k, u in enumerate(factors):
            setattr(self, f"U{k}", u.contiguous())

    def dense_weight(self) -> torch.Tensor:
        return multi_mode_mul(self.core, dict(enumerate(self.factors))).reshape(self.dense_shape)

    # -- forward -------------------------------------------------------------------------------------------------
    def positions(self, x: torch.Tensor) -> int:
        """Output positions of the batch ``x`` (what the per-forward cost of building a weight is shared by)."""
        return x.shape[0]

    def path(self, positions: int = 1) -> str:
        """How the forward pass contracts: the cheapest in multiply-adds of ``path_costs`` for ``positions``
        output positions (a capturing pass: among ``capture_paths``, which give the contracted input)."""
        if self.force_path is not None:
            return self.force_path
        costs = self.path_costs(list(self.core.shape), max(int(positions), 1))
        if self.capturing:
            costs = {k: v for k, v in costs.items() if k in self.capture_paths}
        return min(costs, key=costs.get)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, x_t = self.contract(x, self.path(self.positions(x)))
        if self.capturing:
            assert x_t is not None
            self.contracted = x_t.detach()
        return out

    # -- the basis step ------------------------------------------------------------------------------------------
    def k_grads(self, x: torch.Tensor, g_out: torch.Tensor, qs: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """``dL/dK_i = A_i Q_i`` for the modes in ``qs`` (``Mat_i(C)^T = Q_i R_i``), from the captured pass."""
        return {k: a @ qs[k] for k, a in self.mode_grads(x, g_out, list(qs)).items()}

    def augmentable_modes(self) -> list[int]:
        return [k for k in range(self.d) if self.adaptive[k] and self.core.shape[k] < self.a_max[k]]

    @torch.no_grad()
    def basis_step(
        self, x: torch.Tensor, g_out: torch.Tensor | None, lr: float, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """K-step on every augmentable mode (plain SGD: the augmented span ``[U | dL/dK]`` does not depend on its
        size), augmentation ``U~_k = orth([U_k | K_k])``, the core carried over (``U~_k^T U_k = [I; 0]``: the core
        and its optimizer state padded with zeros, so W is unchanged), and the core's gradient at the augmented
        bases in ``core.grad``, for the core step that follows. Needs a capturing forward pass on ``x``."""
        assert self.contracted is not None, "basis_step needs a captured forward pass"
        c = self.core.detach()
        with full_precision(c.device):  # whatever the run's precision: float32 in, float32 (or 64) throughout
            x, self.contracted = as_float32(x), as_float32(self.contracted)
            g_out = as_float32(g_out) if g_out is not None else None
            modes = self.augmentable_modes() if g_out is not None else []
            with single_threaded():
                qrs = {k: torch.linalg.qr(unfold(c, k).T) for k in modes}  # Mat_k(C)^T = Q R: S_k = R^T
            grads = self.k_grads(x, g_out, {k: q for k, (q, _) in qrs.items()}) if modes else {}
            factors = list(self.factors)
            with single_threaded():
                for k, g in grads.items():
                    factors[k] = augment_basis(factors[k], factors[k] @ qrs[k][1].T - lr * g, self.a_max[k])
            pad = partial(padded, shape=[u.shape[1] for u in factors])
            self.set_state(pad(c), factors, optimizer, moment_transport(pad))
            self.augmented = True
            if g_out is not None:
                self.core.grad = self.augmented_core_grad(x, g_out)
        self.contracted = None

    # -- truncation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def truncate(self, tau: float, optimizer: torch.optim.Optimizer | None = None) -> None:
        """HOSVD truncation of the core in every adaptive mode: ``U_k = U~_k P_k``, ``C = C~ x_k P_k^T`` (the
        optimizer state of the core moved by the same matrices)."""
        c = self.core.detach()
        with full_precision(c.device):  # the threshold, the SVDs and the projections in float32 / float64
            thr = tau * float(torch.linalg.vector_norm(c))
            with single_threaded():
                projs = truncation_projections(c, thr, self.adaptive, self.r_min, self.r_max)
            factors = [u @ projs[k] if k in projs else u for k, u in enumerate(self.factors)]
            moves = {k: p.T for k, p in projs.items()}
            self.set_state(multi_mode_mul(c, moves), factors, optimizer, moves_transport(moves))
        self.augmented = False

    # -- report --------------------------------------------------------------------------------------------------
    def layer_stats(self, name: str) -> LayerStats:
        ranks = self.ranks  # mid-cycle (amortized schedule) these are the augmented ranks
        nb = self.bias.numel() if self.bias is not None else 0
        dense = int(torch.tensor(self.dense_shape).prod()) + nb
        params = sum(n * r for n, r in zip(self.n, ranks, strict=True)) + int(torch.tensor(ranks).prod()) + nb
        # the widest point of the next step: augmented bases and core, K matrices (none while augmented)
        aug = [
            min(2 * r, cap) if ad and not self.augmented else r
            for r, cap, ad in zip(ranks, self.a_max, self.adaptive, strict=True)
        ]
        train = training_parameters(self.n, aug, ranks, self.adaptive, nb)
        extra: dict[str, Any] = {"modes": self.n, "adaptive": self.adaptive, "r_max": self.r_max, "a_max": self.a_max}
        return LayerStats(name, self.kind, self.dense_shape, dense, params, train, ranks, self.fmt, extra)

    def extra_repr(self) -> str:
        return f"{self.structure}, shape={self.dense_shape}, ranks={self.ranks}"
