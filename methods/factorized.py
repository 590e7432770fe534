"""Fixed-rank factorized-layer baselines: Tucker, CP and tensor-train (tltorch) and a two-factor matrix format.

Four methods, registered as ``tucker``, ``cp``, ``tt`` and ``matrix``. Each replaces the selected conv and
linear layers of the dense model by a factorized layer of fixed rank and then trains as usual (one
forward/backward/step per batch).

Formats
-------
* ``tucker``: conv kernels (out, in, kh, kw) as Tucker tensors through ``tltorch.FactorizedConv``; with
  ``modes: channels`` (default, "Tucker-2") only the two channel modes are truncated and the spatial modes
  keep full rank (their kh x kh and kw x kw factors stay trainable parameters), with ``modes: all`` all
  four modes are truncated. Linear weights (out, in) are 2-way Tucker tensors U C V^T (a low-rank matrix
  with a core).
* ``cp``: conv kernels as CP tensors (``tltorch.FactorizedConv``), linear weights as 2-way CP tensors
  U diag(1) V^T. tltorch's CP weight vector lambda is folded into the factors and kept as a buffer of
  ones, so a layer holds exactly r * sum(n_i) weight parameters.
* ``tt``: conv kernels as tensor trains over tltorch's mode order (in, kh, kw, out) through
  ``tltorch.FactorizedConv``, linear weights as 2-core tensor trains (out, in).
* ``matrix``: W = U V^T of the kernel reshaped to (out, in*kh*kw): a conv with r output channels and the
  original kernel size/stride/padding/dilation (V^T) followed by a 1x1 conv carrying the bias (U);
  linear layers as two Linear maps. tltorch has no such layer.

Linear layers use the 2-way (matrix) form of each format rather than tltorch's tensorized linear
layers (``FactorizedLinear`` reshapes the weight into a higher-order tensor): in every format a factorized
linear layer is then a rank-r matrix, and a rank means the same thing for every format.

Rank (parameters ``rank`` / ``compression``)
--------------------------------------------
Every layer has a vector of *free ranks* with upper bounds ("full rank"):

* tucker: one per truncated mode, bounded by that mode's size (channels: out, in; all: out, in, kh, kw;
  linear: out, in);
* cp: one rank; for linear layers bounded by min(out, in) (where 2-way CP is exact), for convs by the
  parameter-parity rank ceil(N / sum(n_i)) at which the CP kernel has as many parameters as the dense one
  (a conv kernel's CP rank is not bounded by its dimensions; a fraction f of this bound keeps about a
  fraction f of the kernel's parameters, like tltorch's float ranks);
* tt: the inner TT ranks r_1..r_{d-1}, bounded by min(n_1...n_k, n_{k+1}...n_d) (conv: 3, linear: 1);
* matrix: one rank, bounded by min(out, in*kh*kw).

``rank`` is either a float f in (0, 1] (each free rank = ceil(f * bound), at least 1; for tt then clipped so
neighbouring ranks stay consistent), an int (every free rank; it must not exceed any bound; note that
``1`` is rank one while ``1.0`` is full rank), or a per-mode list of ints (in a suite, where a list value
means a sweep, write it as a list of lists, e.g. ``rank: [[64, 32]]``) (tucker: 2 entries for ``modes: channels``,
4 for ``modes: all``, linear layers use the first two; tt: 3 inner ranks for convs, linear layers use the
first; cp and matrix have a single rank and take no list). ``compression`` c in (0, 1) instead picks, per
layer, the largest uniform fraction f whose layer (weight + bias) keeps at most (1 - c) of the dense
layer's parameters, so each factorized layer is compressed by at least c (the model-level compression the
engine reports is lower: the first conv, the last linear and BatchNorm stay dense). Resolved ranks are
reported in ``LayerStats.ranks`` (tucker: per mode; cp: [r]; tt: [1, r_1, ..., r_{d-1}, 1]; matrix: [r]).
A layer whose factorized form would not have fewer parameters than the dense one stays dense and is
reported with ``extra["skipped"] = "no parameter saving"``.

Initializations (first = default)
---------------------------------
* ``random``: the factors are drawn from zero-mean Gaussians whose scale is chosen so that the
  reconstructed weight has the standard deviation of the dense layer's own initialization (measured
  from its weights); for tucker and cp this is tltorch's ``FactorizedTensor.normal_``, for tt the same
  rule written here (tltorch's TT ``normal_`` is off by a factor sqrt(r_1...r_{d-1})), for matrix
  U, V ~ N(0, (std^2 / r)^(1/2)). The bias keeps the dense layer's initialization. Measured output std
  of a 128->128 3x3 conv at ranks 0.1-0.5: within about 0.7-1.2x of the dense layer's (heavier tails
  at low rank).
* ``decompose``: the dense layer as built (its usual init) is decomposed at the resolved rank with
  tensorly: Tucker by HOOI (``tensorly.decomposition.tucker``, SVD start, ``decompose_iters`` sweeps);
  CP by ALS (``parafac``) from a seeded random start with ``decompose_iters`` sweeps (capped because CP-ALS
  of a 512x512x3x3 kernel costs seconds to tens of seconds per sweep here; see the notes); TT by TT-SVD
  (``tensor_train``); matrix by the truncated SVD (factors U_r S_r and V_r as a standard SVD gives them).
  The factors are used as the decomposition returns them (orthonormal Tucker factors with the energy in
  the core, left-orthonormal TT cores), except CP: ALS leaves an arbitrary scale per factor (after two
  sweeps from a random start one factor was 100x smaller than the others and LeNet training diverged at
  lr 0.05), so its components are normalized and each weight lambda_k split as lambda_k^(1/d).
  Caveat: at ranks above the mode sizes (the usual case for conv kernels) CP-ALS of a random kernel is
  degenerate: the components partly cancel (sum of lambda_k^2 several times ||W||^2 after two sweeps),
  and LeNet5 trained from CP ``decompose`` is slow and seed-sensitive (accuracy 0.11-0.82 after 3
  epochs at lr 0.02 on 2,000 images, where ``spectral`` gave 0.65-0.86). A ridge term (tensorly's
  ``l2_reg``) curbs the cancellation but its effect depends on the kernel's scale and shape, so none is
  used.
* ``spectral`` (Khodak et al., ICLR 2021): factors from a truncated SVD of the standard full init, with
  the singular values split evenly: matrix U_r S_r^(1/2), V_r S_r^(1/2). Analogues for the tensor
  formats: tucker = truncated HOSVD (tensorly ``tucker`` without HOOI sweeps), each factor scaled by the
  square root of its mode's HOSVD singular values and the core by their inverse square roots (for a matrix
  exactly Khodak's split); tt = TT-SVD brought to the form where every bond's singular values are split
  as square roots between the two neighbouring cores (for two cores exactly Khodak's split); cp = ALS
  started from tensorly's SVD-based (spectral) initialization (factor i = leading left singular vectors of
  the mode-i unfolding), ``decompose_iters`` sweeps, components balanced as for ``decompose``.

Cost of ``prepare`` for VGG16 here (2 cores, idle, default ``decompose_iters=2``): tucker 6-13 s, tt 3-5 s,
matrix 3 s for either init at compression 0.5 or 0.9; cp 17-23 s at compression 0.9 and about 105 s at
0.5 (ranks around 1150 for the 512-channel convs; one CP-ALS sweep there costs 5-25 s). The SVD-based
decompositions run single-threaded (see ``harness.toolkit.single_threaded``), CP's ALS with all threads.

``decompose`` and ``spectral`` reproduce the dense layer exactly at full rank (tucker, tt, matrix; not CP,
whose ALS is capped and whose full rank is only the parameter-parity rank). Every format at rank 1.0 has
at least as many parameters as the dense layer, so ``prepare`` keeps such layers dense; ``factorize``
builds them anyway (used by the tests).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import tensorly as tl
import tltorch
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tensorly.cp_tensor import cp_normalize
from tensorly.decomposition import parafac, tensor_train, tucker
from tensorly.decomposition._cp import initialize_cp
from torch import nn

from harness import Method, register_method
from harness.layers import LayerStats, layer_report
from harness.toolkit import (
    generator_seed,
    replace_module,
    select_layers,
    single_threaded,
    unmatched_patterns,
)

INITIALIZATIONS = ("random", "decompose", "spectral")


# ---------------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------------
class FactorizedParams(BaseModel):
    """Parameters shared by the four fixed-rank formats (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    rank: int | float | list[int] | None = Field(
        None, description="fraction of full rank in (0, 1] (1.0 = full rank), an explicit rank (int; 1 = rank "
                          "one), or a per-mode list of ranks (in a suite a list of lists, a plain list is a "
                          "sweep); default 0.5 unless compression is given")
    compression: float | None = Field(
        None, description="target fraction of each factorized layer's parameters removed, in (0, 1); "
                          "excludes rank")
    layers: list[str] | None = Field(
        None, description="shell patterns of the layers to factorize (in a suite a list of lists); default: "
                          "every conv and linear except the first conv and the last linear")
    implementation: Literal["factorized", "reconstructed"] = Field(
        "factorized", description="contract the factors with the input, or rebuild the dense weight "
                                  "each forward (factorized was faster on CPU everywhere)")
    decompose_iters: int = Field(
        2, ge=1, description="ALS (cp) / HOOI (tucker) sweeps of the decompose and spectral inits")

    default_rank: ClassVar[float] = 0.5
    format_name: ClassVar[str] = ""

    def list_lengths(self) -> tuple[int, ...]:
        """Allowed lengths of a per-mode rank list; empty when the format has a single rank."""
        return ()

    @field_validator("rank", mode="before")
    @classmethod
    def _rank_type(cls, v: Any) -> Any:
        ok = v is None or (isinstance(v, int | float) and not isinstance(v, bool)) or (
            isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
        if not ok:
            raise ValueError(f"rank must be a fraction of full rank in (0, 1] (e.g. 0.5), an int (e.g. 16) "
                             f"or a per-mode list of ints (e.g. [32, 16]), got {v!r}")
        return v

    @model_validator(mode="after")
    def _check_rank(self) -> FactorizedParams:
        fmt = self.format_name or "this method"
        r, c = self.rank, self.compression
        if r is not None and c is not None:
            raise ValueError(f"give either rank or compression, not both (got rank={r!r}, compression={c!r})")
        if c is not None and not 0.0 < c < 1.0:
            raise ValueError(f"compression must lie strictly between 0 and 1 (the fraction of each factorized "
                             f"layer's parameters removed), got {c}")
        if isinstance(r, float) and not 0.0 < r <= 1.0:
            raise ValueError(f"rank {r} as a fraction of full rank must lie in (0, 1]; "
                             f"give an int for an explicit rank")
        if isinstance(r, int) and r < 1:
            raise ValueError(f"rank must be at least 1, got {r}")
        if isinstance(r, list):
            allowed = self.list_lengths()
            if not allowed:
                raise ValueError(f"{fmt} has a single rank per layer; give an int or a fraction, not the list {r}")
            if len(r) not in allowed:
                raise ValueError(f"{fmt} takes a per-mode rank list of length "
                                 f"{' or '.join(map(str, allowed))}{self._list_hint()}, got {len(r)} entries {r}")
            if any(x < 1 for x in r):
                raise ValueError(f"every rank of the list must be at least 1, got {r}")
        if r is None and c is None:
            self.rank = self.default_rank
        return self

    def _list_hint(self) -> str:
        return ""


class TuckerParams(FactorizedParams):
    """Tucker parameters: the common ones plus which conv modes are truncated."""

    modes: Literal["channels", "all"] = Field(
        "channels", description="truncate only the channel modes (Tucker-2) or all four conv modes")
    format_name: ClassVar[str] = "tucker"

    def list_lengths(self) -> tuple[int, ...]:
        return (2,) if self.modes == "channels" else (4,)

    def _list_hint(self) -> str:
        return (" ([out, in]) with modes 'channels'" if self.modes == "channels"
                else " ([out, in, kh, kw]) with modes 'all'")


class CPParams(FactorizedParams):
    format_name: ClassVar[str] = "cp"


class TTParams(FactorizedParams):
    format_name: ClassVar[str] = "tt"

    def list_lengths(self) -> tuple[int, ...]:
        return (3,)

    def _list_hint(self) -> str:
        return " (the inner TT ranks of a conv kernel in tltorch's mode order in, kh, kw, out)"


class MatrixParams(FactorizedParams):
    format_name: ClassVar[str] = "matrix"


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------
class _Reports:
    """Mixin: ``layer_stats`` for a factorized layer (dense shape/count set at construction)."""

    fmt: str
    kind: str
    dense_shape: tuple[int, ...]
    dense_params: int
    ranks: list[int]
    implementation: str

    def layer_stats(self, name: str) -> LayerStats:
        n = sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]
        extra: dict[str, Any] = {"implementation": self.implementation}
        if self.fmt == "tt":
            extra["mode_order"] = ["in", "kh", "kw", "out"] if self.kind == "conv" else ["out", "in"]
        return LayerStats(name, self.kind, list(self.dense_shape), self.dense_params, n, n, list(self.ranks),
                          self.fmt, extra)

    def _set_meta(self, fmt: str, kind: str, dense: nn.Module, ranks: list[int], implementation: str) -> None:
        self.fmt, self.kind, self.ranks, self.implementation = fmt, kind, list(ranks), implementation
        self.dense_shape = tuple(dense.weight.shape)
        self.dense_params = sum(p.numel() for p in dense.parameters(recurse=False))


def _fold_cp_weights(cp: tltorch.CPTensor) -> None:
    """Make tltorch's CP weight vector a buffer of ones: the factors carry the scale (r * sum n_i params)."""
    w = cp.weights.detach()
    del cp.weights
    cp.register_buffer("weights", torch.ones_like(w))


class TensorConv2d(_Reports, tltorch.FactorizedConv):
    """A tltorch ``FactorizedConv`` (Tucker, CP or TT kernel) that reports its ``LayerStats``."""

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, fmt: str, ranks: list[int], implementation: str) -> TensorConv2d:
        rank: Any = ranks[0] if fmt == "cp" else tuple(ranks)
        layer = cls(conv.in_channels, conv.out_channels, tuple(conv.kernel_size), stride=tuple(conv.stride),
                    padding=tuple(conv.padding), dilation=tuple(conv.dilation), bias=conv.bias is not None,
                    factorization=fmt, rank=rank, implementation=implementation,
                    device=conv.weight.device, dtype=conv.weight.dtype)
        if fmt == "cp":
            _fold_cp_weights(layer.weight)
        layer._set_meta(fmt, "conv", conv, ranks, implementation)
        if conv.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(conv.bias)
        return layer

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, format={self.fmt}, "
                f"ranks={self.ranks}, implementation={self.implementation}")


class TensorLinear(_Reports, nn.Module):
    """A linear layer whose (out, in) weight is a 2-way tltorch factorized tensor (Tucker, CP or TT).

    ``factorized``: the input is contracted with the factors (x V, then the core / weights, then U^T);
    ``reconstructed``: the dense weight is rebuilt each forward and applied with ``F.linear``.
    """

    def __init__(self, linear: nn.Linear, fmt: str, ranks: list[int], implementation: str):
        super().__init__()
        out_f, in_f = linear.weight.shape
        rank: Any = ranks[0] if fmt == "cp" else tuple(ranks)
        self.weight = tltorch.FactorizedTensor.new((out_f, in_f), rank=rank, factorization=fmt,
                                                   device=linear.weight.device, dtype=linear.weight.dtype)
        if fmt == "cp":
            _fold_cp_weights(self.weight)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.in_features, self.out_features = in_f, out_f
        self._set_meta(fmt, "linear", linear, ranks, implementation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.implementation == "reconstructed":
            return F.linear(x, w.to_tensor(), self.bias)
        if self.fmt == "tucker":
            u, v = w.factors[0], w.factors[1]
            y = (x @ v) @ w.core.t() @ u.t()
        elif self.fmt == "cp":
            y = ((x @ w.factors[1]) * w.weights) @ w.factors[0].t()
        else:  # tt: cores (1, out, r), (r, in, 1)
            y = (x @ w.factors[1][:, :, 0].t()) @ w.factors[0][0].t()
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.fmt}, "
                f"ranks={self.ranks}, implementation={self.implementation}")


class MatrixConv2d(_Reports, nn.Module):
    """W = U V^T of the kernel reshaped to (out, in*kh*kw).

    ``factorized``: a conv with r output channels and the original kernel size, stride, padding and
    dilation (weight V^T reshaped to (r, in, kh, kw)), then a 1x1 conv (weight U) with the bias;
    ``reconstructed``: W rebuilt each forward and applied as one conv.
    """

    def __init__(self, conv: nn.Conv2d, rank: int, implementation: str):
        super().__init__()
        dev, dt = conv.weight.device, conv.weight.dtype
        self.v = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                           bias=False, device=dev, dtype=dt)
        self.u = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None, device=dev, dtype=dt)
        if conv.bias is not None:
            with torch.no_grad():
                self.u.bias.copy_(conv.bias)
        self._set_meta("matrix", "conv", conv, [rank], implementation)

    def set_factors(self, u: torch.Tensor, v: torch.Tensor) -> None:
        """Set U (out, r) and V (in*kh*kw, r)."""
        with torch.no_grad():
            self.u.weight.copy_(u.reshape(self.u.weight.shape))
            self.v.weight.copy_(v.t().reshape(self.v.weight.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.implementation == "reconstructed":
            w = (self.u.weight.flatten(1) @ self.v.weight.flatten(1)).reshape(self.dense_shape)
            return F.conv2d(x, w, self.u.bias, self.v.stride, self.v.padding, self.v.dilation)
        return self.u(self.v(x))


class MatrixLinear(_Reports, nn.Module):
    """W = U V^T: ``Linear(in, r, bias=False)`` then ``Linear(r, out)`` (or W rebuilt: ``reconstructed``)."""

    def __init__(self, linear: nn.Linear, rank: int, implementation: str):
        super().__init__()
        out_f, in_f = linear.weight.shape
        dev, dt = linear.weight.device, linear.weight.dtype
        self.v = nn.Linear(in_f, rank, bias=False, device=dev, dtype=dt)
        self.u = nn.Linear(rank, out_f, bias=linear.bias is not None, device=dev, dtype=dt)
        if linear.bias is not None:
            with torch.no_grad():
                self.u.bias.copy_(linear.bias)
        self._set_meta("matrix", "linear", linear, [rank], implementation)

    def set_factors(self, u: torch.Tensor, v: torch.Tensor) -> None:
        with torch.no_grad():
            self.u.weight.copy_(u)
            self.v.weight.copy_(v.t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.implementation == "reconstructed":
            return F.linear(x, self.u.weight @ self.v.weight, self.u.bias)
        return self.u(self.v(x))


# ---------------------------------------------------------------------------------------------------------
# Rank resolution
# ---------------------------------------------------------------------------------------------------------
@dataclass
class LayerPlan:
    """What the method will do with one selected layer."""

    name: str
    kind: str  # "conv" or "linear"
    shape: tuple[int, ...]
    dense_params: int
    bias: int
    ranks: list[int] | None = None  # reported (format) ranks
    params: int | None = None  # factorized parameter count, bias included
    skip: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fraction_ranks(bounds: list[int], f: float) -> list[int]:
    # round() first so that 0.3 * 10 = 3.0000000000000004 gives 3, not 4
    return [min(b, max(1, math.ceil(round(f * b, 6)))) for b in bounds]


def _prod(xs) -> int:
    return int(np.prod(list(xs), dtype=np.int64)) if len(xs) else 1


class _FactorizedMethod(Method):
    """Shared machinery of the four formats: layer selection, rank resolution, init dispatch, stats."""

    fmt: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = FactorizedParams
    initializations = INITIALIZATIONS

    def __init__(self, params=None, initialization: str = "default"):
        super().__init__(params, initialization)
        self.plans: dict[str, LayerPlan] = {}

    # -- format description (overridden per format) ----------------------------------------------------
    def rank_space(self, kind: str, shape: tuple[int, ...]) -> tuple[list[str], list[int]]:
        """Names and upper bounds ("full rank") of the free ranks of a layer."""
        raise NotImplementedError

    def format_ranks(self, kind: str, shape: tuple[int, ...], free: list[int]) -> list[int]:
        """The reported ranks of the format, given the free ranks."""
        return list(free)

    def weight_count(self, kind: str, shape: tuple[int, ...], ranks: list[int]) -> int:
        """Weight parameters of the factorized layer (closed form)."""
        raise NotImplementedError

    def list_ranks(self, kind: str, ranks: list[int]) -> list[int]:
        """Free ranks of a layer from a per-mode rank list."""
        return list(ranks)

    def fraction_ranks(self, kind: str, shape: tuple[int, ...], f: float) -> list[int]:
        """Free ranks at a fraction ``f`` of full rank."""
        return _fraction_ranks(self.rank_space(kind, shape)[1], f)

    def check_free(self, name: str, kind: str, shape: tuple[int, ...], free: list[int]) -> None:
        names, bounds = self.rank_space(kind, shape)
        for n, r, b in zip(names, free, bounds, strict=True):
            if r > b:
                raise ValueError(
                    f"{self.fmt}: layer {name!r} ({kind} weight {tuple(shape)}): rank {r} exceeds {n} = {b}; "
                    f"give a fraction of full rank (e.g. rank: 0.5), a smaller rank, or a compression")

    # -- planning ---------------------------------------------------------------------------------------
    def plan_layer(self, name: str, module: nn.Module) -> LayerPlan:
        """Resolve the ranks of one layer; raise ValueError on an impossible spec."""
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        shape = tuple(module.weight.shape)
        dense = sum(p.numel() for p in module.parameters(recurse=False))
        bias = 0 if module.bias is None else module.bias.numel()
        plan = LayerPlan(name, kind, shape, dense, bias)
        if kind == "conv" and (module.groups != 1 or module.padding_mode != "zeros"
                               or isinstance(module.padding, str)):
            plan.skip = "unsupported conv (groups, padding mode or string padding)"
            return plan
        p = self.params
        bounds = self.rank_space(kind, shape)[1]
        if p.compression is not None:
            free = self._ranks_for_budget(name, kind, shape, (1.0 - p.compression) * dense - bias)
        elif isinstance(p.rank, float):
            free = self.fraction_ranks(kind, shape, p.rank)
        elif isinstance(p.rank, int):
            free = [p.rank] * len(bounds)
        else:
            free = self.list_ranks(kind, list(p.rank))
        self.check_free(name, kind, shape, free)
        plan.ranks = self.format_ranks(kind, shape, free)
        plan.params = self.weight_count(kind, shape, plan.ranks) + bias
        if plan.params >= dense:
            plan.skip = "no parameter saving"
            plan.extra = {"ranks_requested": plan.ranks, "params_factorized": plan.params}
        return plan

    def _ranks_for_budget(self, name: str, kind: str, shape: tuple[int, ...], budget: float) -> list[int]:
        """Largest uniform fraction whose ranks keep the weight count within ``budget``."""

        def count(f: float) -> int:
            return self.weight_count(kind, shape, self.format_ranks(kind, shape, self.fraction_ranks(kind, shape, f)))

        if count(0.0) > budget:
            c = self.params.compression
            raise ValueError(
                f"{self.fmt}: layer {name!r} ({kind} weight {tuple(shape)}): compression {c} is not reachable, "
                f"even rank 1 keeps {count(0.0)} weight parameters (budget {int(budget)}); "
                f"lower the compression or exclude the layer")
        lo, hi = 0.0, 1.0
        if count(hi) <= budget:
            lo = hi
        else:
            for _ in range(60):
                mid = (lo + hi) / 2
                if count(mid) <= budget:
                    lo = mid
                else:
                    hi = mid
        return self.fraction_ranks(kind, shape, lo)

    # -- the method contract ------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        patterns = self.params.layers
        if patterns is not None:
            missing = unmatched_patterns(model, patterns)
            if missing:
                from harness.toolkit import candidate_layers

                raise ValueError(f"{self.fmt}: layer pattern(s) {missing} match no conv/linear layer; "
                                 f"layers: {', '.join(candidate_layers(model))}")
        modules = dict(model.named_modules())
        # Resolve every layer first so that an impossible spec fails before any decomposition runs.
        plans = [self.plan_layer(n, modules[n]) for n in select_layers(model, patterns)]
        self.plans = {p.name: p for p in plans}
        for plan in plans:
            if plan.skip:
                continue
            dense = modules[plan.name]
            replace_module(model, plan.name, self.factorize(dense, generator_seed(generator), plan))
        return model

    def factorize(self, dense: nn.Module, seed: int, plan: LayerPlan | None = None) -> nn.Module:
        """The factorized, initialized replacement of one dense layer at the resolved ranks (built even
        when it saves no parameters; ``prepare`` skips those)."""
        plan = plan or self.plan_layer("layer", dense)
        if plan.ranks is None:
            raise ValueError(f"{self.fmt}: cannot factorize layer {plan.name!r}: {plan.skip}")
        layer = self.build_layer(dense, plan)
        self.initialize(layer, dense, seed)
        return layer

    def layer_stats(self, model: nn.Module) -> list[LayerStats]:
        stats = layer_report(model)
        for s in stats:
            plan = self.plans.get(s.name)
            if plan is not None and plan.skip:
                s.extra = {**s.extra, "skipped": plan.skip, **plan.extra}
        return stats

    # -- layers and initializations -----------------------------------------------------------------------
    def build_layer(self, dense: nn.Module, plan: LayerPlan) -> nn.Module:
        impl = self.params.implementation
        if isinstance(dense, nn.Conv2d):
            return TensorConv2d.from_dense(dense, self.fmt, plan.ranks, impl)
        return TensorLinear(dense, self.fmt, plan.ranks, impl)

    def initialize(self, layer: nn.Module, dense: nn.Module, seed: int) -> None:
        w = dense.weight.detach()
        if self.initialization == "random":
            self.init_random(layer, float(w.std()), seed)
            return
        with warnings.catch_warnings(), tl.backend_context("pytorch"):
            # tensorly warns whenever a requested rank exceeds an unfolding's size (CP ranks above a mode
            # size are expected; the SVD start pads those factors with random columns)
            warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
            self.init_from_dense(layer, w, seed, spectral=self.initialization == "spectral")

    def init_random(self, layer: nn.Module, std: float, seed: int) -> None:
        """tltorch's normal_: reconstruction ~ zero mean, standard deviation ``std``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layer.weight.normal_(0, std)

    def init_from_dense(self, layer: nn.Module, w: torch.Tensor, seed: int, spectral: bool) -> None:
        raise NotImplementedError


def _copy_factors(dst_factors, src_factors) -> None:
    with torch.no_grad():
        for d, s in zip(dst_factors, src_factors, strict=True):
            d.copy_(s.reshape(d.shape))


# ---------------------------------------------------------------------------------------------------------
# Tucker
# ---------------------------------------------------------------------------------------------------------
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


@register_method("tucker")
class TuckerMethod(_FactorizedMethod):
    """Tucker baseline (tltorch): conv kernels as Tucker tensors (channel modes or all), linear as U C V^T."""

    name = "tucker"
    fmt = "tucker"
    Params = TuckerParams

    def rank_space(self, kind, shape):
        if kind == "linear":
            return ["out_features", "in_features"], list(shape)
        if self.params.modes == "channels":
            return ["out_channels", "in_channels"], list(shape[:2])
        return ["out_channels", "in_channels", "kernel_h", "kernel_w"], list(shape)

    def format_ranks(self, kind, shape, free):
        if kind == "conv" and self.params.modes == "channels":
            return [*free, *shape[2:]]
        return list(free)

    def weight_count(self, kind, shape, ranks):
        return sum(n * r for n, r in zip(shape, ranks, strict=True)) + _prod(ranks)

    def list_ranks(self, kind, ranks):
        return ranks[:2] if kind == "linear" else ranks

    def init_from_dense(self, layer, w, seed, spectral):
        with single_threaded(), torch.no_grad():
            core, factors = tucker(w, rank=list(layer.ranks), init="svd",
                                   n_iter_max=0 if spectral else self.params.decompose_iters,
                                   tol=0, random_state=seed)
            if spectral:
                core, factors = balanced_tucker(core, list(factors))
            _copy_factors([layer.weight.core, *layer.weight.factors], [core, *factors])


# ---------------------------------------------------------------------------------------------------------
# CP
# ---------------------------------------------------------------------------------------------------------
def balanced_cp(cp) -> list[torch.Tensor]:
    """CP factors with each component's weight lambda_k split evenly as lambda_k^(1/d) over its d factors
    (unit-norm columns times lambda_k^(1/d)); the reconstruction is unchanged."""
    weights, factors = cp_normalize(cp)
    split = weights.abs().clamp_min(1e-30) ** (1.0 / len(factors))
    factors = [f * split for f in factors]
    factors[0] = factors[0] * torch.sign(weights)
    return factors


@register_method("cp")
class CPMethod(_FactorizedMethod):
    """CP baseline (tltorch): conv kernels and linear weights as CP tensors of one rank."""

    name = "cp"
    fmt = "cp"
    Params = CPParams

    def rank_space(self, kind, shape):
        if kind == "linear":
            return ["min(out_features, in_features)"], [min(shape)]
        return ["the parameter-parity rank ceil(N / sum(n_i))"], [math.ceil(_prod(shape) / sum(shape))]

    def weight_count(self, kind, shape, ranks):
        return ranks[0] * sum(shape)

    def init_from_dense(self, layer, w, seed, spectral):
        r, iters = layer.ranks[0], self.params.decompose_iters
        with torch.no_grad():
            if spectral:
                with single_threaded():
                    start = initialize_cp(w, r, init="svd", random_state=seed)
            else:
                start = "random"
            cp = parafac(w, r, n_iter_max=iters, init=start, tol=0, random_state=seed)
            _copy_factors(layer.weight.factors, balanced_cp(cp))


# ---------------------------------------------------------------------------------------------------------
# Tensor train
# ---------------------------------------------------------------------------------------------------------
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


@register_method("tt")
class TTMethod(_FactorizedMethod):
    """Tensor-train baseline (tltorch): conv kernels as TT over (in, kh, kw, out), linear as 2-core TT."""

    name = "tt"
    fmt = "tt"
    Params = TTParams

    @staticmethod
    def tt_shape(kind, shape):
        return (shape[1], shape[2], shape[3], shape[0]) if kind == "conv" else tuple(shape)

    def rank_space(self, kind, shape):
        n = self.tt_shape(kind, shape)
        labels = ["in", "kh", "kw", "out"] if kind == "conv" else ["out", "in"]
        names = [f"the full TT rank between ({','.join(labels[:k])}) and ({','.join(labels[k:])})"
                 for k in range(1, len(n))]
        return names, [min(_prod(n[:k]), _prod(n[k:])) for k in range(1, len(n))]

    def format_ranks(self, kind, shape, free):
        return [1, *free, 1]

    def fraction_ranks(self, kind, shape, f):
        """ceil(f * bound) per inner rank, then clipped so that neighbouring ranks stay consistent
        (r_k <= n_k r_{k-1} and r_{k-1} <= n_k r_k)."""
        n, r = self.tt_shape(kind, shape), [1, *super().fraction_ranks(kind, shape, f), 1]
        for k in range(1, len(r) - 1):
            r[k] = min(r[k], n[k - 1] * r[k - 1])
        for k in range(len(r) - 2, 0, -1):
            r[k] = min(r[k], n[k] * r[k + 1])
        return r[1:-1]

    def weight_count(self, kind, shape, ranks):
        n = self.tt_shape(kind, shape)
        return sum(ranks[k] * n[k] * ranks[k + 1] for k in range(len(n)))

    def list_ranks(self, kind, ranks):
        return ranks[:1] if kind == "linear" else ranks

    def check_free(self, name, kind, shape, free):
        super().check_free(name, kind, shape, free)
        n, r = self.tt_shape(kind, shape), [1, *free, 1]
        for k in range(len(n)):
            if r[k] > n[k] * r[k + 1] or r[k + 1] > n[k] * r[k]:
                raise ValueError(f"tt: layer {name!r} ({kind} weight {tuple(shape)}): TT ranks {r} are "
                                 f"inconsistent at core {k} of size {n[k]} (need r_k <= n_k r_k+1 and "
                                 f"r_k+1 <= n_k r_k); give a fraction of full rank instead")

    def init_random(self, layer, std, seed):
        """Each core ~ N(0, s^2) with s = (std / sqrt(r_1 ... r_{d-1}))^(1/d), so the reconstruction has
        standard deviation ``std``. (tltorch 0.5's ``TTTensor.normal_`` divides by the product of the
        ranks instead of its square root, which shrinks the weights by sqrt(r_1 ... r_{d-1}).)"""
        cores = list(layer.weight.factors)
        s = (std / math.sqrt(_prod(layer.ranks))) ** (1.0 / len(cores))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for c in cores:
                c.copy_(torch.randn(c.shape, generator=gen, dtype=c.dtype).to(c.device) * s)

    def init_from_dense(self, layer, w, seed, spectral):
        t = w.permute(1, 2, 3, 0) if w.ndim == 4 else w
        with single_threaded(), torch.no_grad():
            cores = list(tensor_train(t, rank=list(layer.ranks)))
            if spectral:
                cores = balanced_tt(cores)
            _copy_factors(layer.weight.factors, cores)


# ---------------------------------------------------------------------------------------------------------
# Matrix (U V^T)
# ---------------------------------------------------------------------------------------------------------
@register_method("matrix")
class MatrixMethod(_FactorizedMethod):
    """Low-rank matrix baseline: W = U V^T of the kernel reshaped to (out, in*kh*kw) and of linear weights."""

    name = "matrix"
    fmt = "matrix"
    Params = MatrixParams

    def rank_space(self, kind, shape):
        m, n = shape[0], _prod(shape[1:])
        what = "min(out_channels, in_channels*kh*kw)" if kind == "conv" else "min(out_features, in_features)"
        return [what], [min(m, n)]

    def weight_count(self, kind, shape, ranks):
        return ranks[0] * (shape[0] + _prod(shape[1:]))

    def build_layer(self, dense, plan):
        cls = MatrixConv2d if isinstance(dense, nn.Conv2d) else MatrixLinear
        return cls(dense, plan.ranks[0], self.params.implementation)

    def init_random(self, layer, std, seed):
        r = layer.ranks[0]
        s = (std * std / r) ** 0.25
        gen = torch.Generator().manual_seed(seed)
        m, n = layer.dense_shape[0], _prod(layer.dense_shape[1:])
        u = torch.randn(m, r, generator=gen) * s
        v = torch.randn(n, r, generator=gen) * s
        layer.set_factors(u, v)

    def init_from_dense(self, layer, w, seed, spectral):
        r = layer.ranks[0]
        with single_threaded(), torch.no_grad():
            u, s, vh = torch.linalg.svd(w.reshape(w.shape[0], -1), full_matrices=False)
        u, s, v = u[:, :r], s[:r], vh[:r].t()
        if spectral:
            layer.set_factors(u * s.sqrt(), v * s.sqrt())
        else:
            layer.set_factors(u * s, v)


__all__ = [
    "CPMethod", "FactorizedParams", "MatrixConv2d", "MatrixLinear", "MatrixMethod", "TTMethod", "TensorConv2d",
    "TensorLinear", "TuckerMethod", "balanced_tt", "balanced_tucker",
]
