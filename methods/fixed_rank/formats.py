"""The fixed-rank formats: what a rank means in each, how many weights it costs, and how its layer is built
and initialized.

A format is declared once, in its class line: ``class CP(Format, name="cp")`` registers it in ``FORMATS``
under that name and gives it its own parameter class (``CP.Params``, named ``CPParams``). A format's
instance holds the validated parameters and answers, for a layer of kind ``conv`` or ``linear`` and dense
weight shape ``shape``:

* ``rank_space(kind, shape)``: the names and upper bounds ("full rank") of the layer's free ranks;
* ``fraction_ranks(kind, shape, f)``: the free ranks at a fraction ``f`` of full rank (the one rule,
  :func:`harness.toolkit.rank_from_fraction`, per bound);
* ``format_ranks(kind, shape, free)``: the ranks the layer reports, given the free ranks;
* ``weight_count(kind, shape, ranks)``: the weight parameters of the factorized layer (closed form);
* ``build_layer(dense, ranks, implementation)``, ``init_random(layer, std, seed)`` and
  ``init_from_dense(layer, w, seed, spectral)``: the layer and its initializations.

The method that uses a format is :class:`harness_methods.fixed_rank.method.FixedRankMethod`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from tensorly.decomposition import parafac, tensor_train, tucker
from tensorly.decomposition._cp import initialize_cp
from torch import nn

from harness.toolkit import rank_from_fraction, single_threaded

from .algebra import balanced_cp, balanced_tt, balanced_tucker, copy_factors, prod
from .layers import MatrixConv2d, MatrixLinear, TensorConv2d, TensorLinear
from .params import FixedRankParams, ModesParams

Shape = tuple[int, ...]

FORMATS: dict[str, type[Format]] = {}


class Format:
    """Base of the fixed-rank formats; a subclass declares its name in its class line (see the module)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[FixedRankParams]] = FixedRankParams
    rank_lists: ClassVar[tuple[int, ...]] = ()  # allowed lengths of a per-mode rank list; () = a single rank

    def __init_subclass__(cls, name: str, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if name in FORMATS:
            raise ValueError(f"fixed-rank format {name!r} is already declared by {FORMATS[name]!r}")
        cls.name = name
        cls.Params = type(
            f"{cls.__name__}Params",
            (cls.Params,),
            {
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__}.Params",
                "format": cls,
                "__doc__": f"Parameters of the {name} format (harness_methods.fixed_rank).",
            },
        )
        FORMATS[name] = cls

    def __init__(self, params: FixedRankParams):
        self.params = params

    @classmethod
    def rank_list_lengths(cls, params: FixedRankParams) -> tuple[int, ...]:
        """Allowed lengths of a per-mode rank list; empty when the format has a single rank."""
        return cls.rank_lists

    @classmethod
    def rank_list_hint(cls, params: FixedRankParams) -> str:
        """What the entries of a per-mode rank list are (for error messages)."""
        return ""

    # -- ranks -------------------------------------------------------------------------------------------
    def rank_space(self, kind: str, shape: Shape) -> tuple[list[str], list[int]]:
        """Names and upper bounds ("full rank") of the free ranks of a layer."""
        raise NotImplementedError

    def fraction_ranks(self, kind: str, shape: Shape, f: float) -> list[int]:
        """Free ranks at a fraction ``f`` of full rank: ``rank_from_fraction(f, bound)`` per bound."""
        return [rank_from_fraction(f, b) for b in self.rank_space(kind, shape)[1]]

    def format_ranks(self, kind: str, shape: Shape, free: list[int]) -> list[int]:
        """The reported ranks of the format, given the free ranks."""
        return list(free)

    def list_ranks(self, kind: str, ranks: list[int]) -> list[int]:
        """Free ranks of a layer from a per-mode rank list."""
        return list(ranks)

    def weight_count(self, kind: str, shape: Shape, ranks: list[int]) -> int:
        """Weight parameters of the factorized layer (closed form)."""
        raise NotImplementedError

    def check_free(self, name: str, kind: str, shape: Shape, free: list[int]) -> None:
        """Raise ValueError where a free rank exceeds its bound."""
        names, bounds = self.rank_space(kind, shape)
        for n, r, b in zip(names, free, bounds, strict=True):
            if r > b:
                raise ValueError(
                    f"{self.name}: layer {name!r} ({kind} weight {tuple(shape)}): rank {r} exceeds {n} = {b}; "
                    f"give a fraction of full rank (e.g. rank: 0.5), a smaller rank, or a compression"
                )

    # -- layers and initializations ---------------------------------------------------------------------
    def build_layer(self, dense: nn.Module, ranks: list[int], implementation: str) -> nn.Module:
        """The (uninitialized) factorized layer: a tltorch tensor layer of this format by default."""
        kind = "conv" if isinstance(dense, nn.Conv2d) else "linear"
        extra = self.layer_extra(kind)
        if kind == "conv":
            return TensorConv2d.from_dense(dense, self.name, ranks, implementation, extra)
        return TensorLinear(dense, self.name, ranks, implementation, extra)

    def layer_extra(self, kind: str) -> dict[str, Any]:
        """Format-specific entries of the layer's ``LayerStats.extra``."""
        return {}

    def init_random(self, layer: nn.Module, std: float, seed: int) -> None:
        """tltorch's normal_: reconstruction ~ zero mean, standard deviation ``std``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layer.weight.normal_(0, std)

    def init_from_dense(self, layer: nn.Module, w: torch.Tensor, seed: int, spectral: bool) -> None:
        """Factors from a decomposition of the dense weight ``w`` (``spectral``: balanced factors)."""
        raise NotImplementedError


class Tucker(Format, name="tucker"):
    """Tucker baseline (tltorch): conv kernels as Tucker tensors (channel modes or all), linear as U C V^T."""

    Params = ModesParams

    @classmethod
    def rank_list_lengths(cls, params):
        return (2,) if params.modes == "channels" else (4,)

    @classmethod
    def rank_list_hint(cls, params):
        return (
            " ([out, in]) with modes 'channels'"
            if params.modes == "channels"
            else " ([out, in, kh, kw]) with modes 'all'"
        )

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
        return sum(n * r for n, r in zip(shape, ranks, strict=True)) + prod(ranks)

    def list_ranks(self, kind, ranks):
        return ranks[:2] if kind == "linear" else ranks

    def init_from_dense(self, layer, w, seed, spectral):
        with single_threaded(), torch.no_grad():
            core, factors = tucker(
                w,
                rank=list(layer.ranks),
                init="svd",
                n_iter_max=0 if spectral else self.params.decompose_iters,
                tol=0,
                random_state=seed,
            )
            if spectral:
                core, factors = balanced_tucker(core, list(factors))
            copy_factors([layer.weight.core, *layer.weight.factors], [core, *factors])


class CP(Format, name="cp"):
    """CP baseline (tltorch): conv kernels and linear weights as CP tensors of one rank."""

    def rank_space(self, kind, shape):
        if kind == "linear":
            return ["min(out_features, in_features)"], [min(shape)]
        return ["the parameter-parity rank ceil(N / sum(n_i))"], [math.ceil(prod(shape) / sum(shape))]

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
            copy_factors(layer.weight.factors, balanced_cp(cp))


class TT(Format, name="tt"):
    """Tensor-train baseline (tltorch): conv kernels as TT over (in, kh, kw, out), linear as 2-core TT."""

    rank_lists = (3,)

    @classmethod
    def rank_list_hint(cls, params):
        return " (the inner TT ranks of a conv kernel in tltorch's mode order in, kh, kw, out)"

    @staticmethod
    def tt_shape(kind: str, shape: Shape) -> Shape:
        """The TT mode sizes: tltorch's conv order (in, kh, kw, out), or (out, in)."""
        return (shape[1], shape[2], shape[3], shape[0]) if kind == "conv" else tuple(shape)

    def rank_space(self, kind, shape):
        n = self.tt_shape(kind, shape)
        labels = ["in", "kh", "kw", "out"] if kind == "conv" else ["out", "in"]
        names = [
            f"the full TT rank between ({','.join(labels[:k])}) and ({','.join(labels[k:])})" for k in range(1, len(n))
        ]
        return names, [min(prod(n[:k]), prod(n[k:])) for k in range(1, len(n))]

    def format_ranks(self, kind, shape, free):
        return [1, *free, 1]

    def fraction_ranks(self, kind, shape, f):
        """The rule per inner rank, then clipped so that neighbouring ranks stay consistent
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
                raise ValueError(
                    f"{self.name}: layer {name!r} ({kind} weight {tuple(shape)}): TT ranks {r} are "
                    f"inconsistent at core {k} of size {n[k]} (need r_k <= n_k r_k+1 and "
                    f"r_k+1 <= n_k r_k); give a fraction of full rank instead"
                )

    def layer_extra(self, kind):
        return {"mode_order": ["in", "kh", "kw", "out"] if kind == "conv" else ["out", "in"]}

    def init_random(self, layer, std, seed):
        """Each core ~ N(0, s^2) with s = (std / sqrt(r_1 ... r_{d-1}))^(1/d), so the reconstruction has
        standard deviation ``std``. (tltorch 0.5's ``TTTensor.normal_`` divides by the product of the
        ranks instead of its square root, which shrinks the weights by sqrt(r_1 ... r_{d-1}).)"""
        cores = list(layer.weight.factors)
        s = (std / math.sqrt(prod(layer.ranks))) ** (1.0 / len(cores))
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
            copy_factors(layer.weight.factors, cores)


class Matrix(Format, name="matrix"):
    """Low-rank matrix baseline: W = U V^T of the kernel reshaped to (out, in*kh*kw) and of linear weights."""

    def rank_space(self, kind, shape):
        m, n = shape[0], prod(shape[1:])
        what = "min(out_channels, in_channels*kh*kw)" if kind == "conv" else "min(out_features, in_features)"
        return [what], [min(m, n)]

    def weight_count(self, kind, shape, ranks):
        return ranks[0] * (shape[0] + prod(shape[1:]))

    def build_layer(self, dense, ranks, implementation):
        cls = MatrixConv2d if isinstance(dense, nn.Conv2d) else MatrixLinear
        return cls(dense, ranks[0], implementation, self.name)

    def init_random(self, layer, std, seed):
        r = layer.ranks[0]
        s = (std * std / r) ** 0.25
        gen = torch.Generator().manual_seed(seed)
        m, n = layer.dense_shape[0], prod(layer.dense_shape[1:])
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
