"""The one fixed-rank method, parameterized by its format, and the registered methods of the formats.

:class:`FixedRankMethod` selects the layers, resolves each layer's ranks (a fraction, an int, a per-mode
list, or the largest uniform fraction that meets a ``compression`` target), replaces the layers by the
format's factorized layers and initializes them. ``fixed_rank_method(Format)`` makes the registered method
of a format: a subclass with the format's name, parameters and description.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import tensorly as tl
import torch
from torch import nn

from harness import Method, register_method
from harness.layers import LayerStats, layer_report
from harness.optim import build_optimizer
from harness.toolkit import (
    candidate_layers,
    full_precision,
    generator_seed,
    pattern_problems,
    replace_module,
    select_layers,
    unmatched_patterns,
)

from .formats import CP, TT, Format, Matrix, Shape, Tucker
from .layers import MatrixConv2d, MatrixLinear, TensorConv2d, TensorLinear
from .params import FixedRankParams

INITIALIZATIONS = ("random", "decompose", "spectral")


@dataclass
class LayerPlan:
    """What the method will do with one selected layer."""

    name: str
    kind: str  # "conv" or "linear"
    shape: Shape
    dense_params: int
    bias: int
    ranks: list[int] | None = None  # reported (format) ranks
    params: int | None = None  # factorized parameter count, bias included
    skip: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class FixedRankMethod(Method):
    """Replace the selected layers by factorized layers of fixed rank in the class's ``Format``, then train
    as usual (one forward/backward/step per batch)."""

    Format: ClassVar[type[Format]]
    Params: ClassVar[type[FixedRankParams]] = FixedRankParams
    initializations = INITIALIZATIONS
    pretrained_initializations = ("decompose", "spectral")  # a truncated decomposition of the trained weights

    def __init__(self, params=None, initialization: str = "default"):
        super().__init__(params, initialization)
        self.format = self.Format(self.params)
        self.plans: dict[str, LayerPlan] = {}

    # -- planning -------------------------------------------------------------------------------------
    def plan_layer(self, name: str, module: nn.Module) -> LayerPlan:
        """Resolve the ranks of one layer; raise ValueError on an impossible spec."""
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        shape = tuple(module.weight.shape)
        dense = sum(p.numel() for p in module.parameters(recurse=False))
        bias = 0 if module.bias is None else module.bias.numel()
        plan = LayerPlan(name, kind, shape, dense, bias)
        if kind == "conv" and (module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)):
            plan.skip = "unsupported conv (groups, padding mode or string padding)"
            return plan
        p, fmt = self.params, self.format
        if p.compression is not None:
            free = self._ranks_for_budget(name, kind, shape, (1.0 - p.compression) * dense - bias)
        elif isinstance(p.rank, float):
            free = fmt.fraction_ranks(kind, shape, p.rank)
        elif isinstance(p.rank, int):
            free = [p.rank] * len(fmt.rank_space(kind, shape)[1])
        else:
            free = fmt.list_ranks(kind, list(p.rank))
        fmt.check_free(name, kind, shape, free)
        plan.ranks = fmt.format_ranks(kind, shape, free)
        plan.params = fmt.weight_count(kind, shape, plan.ranks) + bias
        if plan.params >= dense:
            plan.skip = "no parameter saving"
            plan.extra = {"ranks_requested": plan.ranks, "params_factorized": plan.params}
        return plan

    def _ranks_for_budget(self, name: str, kind: str, shape: Shape, budget: float) -> list[int]:
        """Free ranks at the largest uniform fraction whose weight count stays within ``budget``."""
        fmt = self.format

        def count(free: list[int]) -> int:
            return fmt.weight_count(kind, shape, fmt.format_ranks(kind, shape, free))

        floor = [1] * len(fmt.rank_space(kind, shape)[1])  # every free rank 1: the limit f -> 0
        if count(floor) > budget:
            raise ValueError(
                f"{self.name}: layer {name!r} ({kind} weight {tuple(shape)}): compression "
                f"{self.params.compression} is not reachable, even rank 1 keeps {count(floor)} weight "
                f"parameters (budget {int(budget)}); lower the compression or exclude the layer"
            )
        if count(fmt.fraction_ranks(kind, shape, 1.0)) <= budget:
            return fmt.fraction_ranks(kind, shape, 1.0)
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if count(fmt.fraction_ranks(kind, shape, mid)) <= budget:
                lo = mid
            else:
                hi = mid
        return fmt.fraction_ranks(kind, shape, lo) if lo > 0 else floor

    # -- the method contract ----------------------------------------------------------------------------
    def model_problems(self, model: nn.Module) -> list[tuple[str, str]]:
        return pattern_problems(model, self.params.layers)

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        patterns = self.params.layers
        if patterns is not None:
            missing = unmatched_patterns(model, patterns)
            if missing:
                raise ValueError(
                    f"{self.name}: layer pattern(s) {missing} match no conv/linear layer; "
                    f"layers: {', '.join(candidate_layers(model))}"
                )
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
            raise ValueError(f"{self.name}: cannot factorize layer {plan.name!r}: {plan.skip}")
        layer = self.format.build_layer(dense, plan.ranks, self.params.implementation)
        self.initialize(layer, dense, seed)
        return layer

    def initialize(self, layer: nn.Module, dense: nn.Module, seed: int) -> None:
        w = dense.weight.detach()
        if self.initialization == "random":
            self.format.init_random(layer, float(w.std()), seed)
            return
        with warnings.catch_warnings(), tl.backend_context("pytorch"):
            # tensorly warns whenever a requested rank exceeds an unfolding's size (CP ranks above a mode
            # size are expected; the SVD start pads those factors with random columns)
            warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
            self.format.init_from_dense(layer, w, seed, spectral=self.initialization == "spectral")

    # -- Frobenius decay (Khodak et al., ICLR 2021) ---------------------------------------------------------
    @staticmethod
    def factorized_layers(model: nn.Module) -> list[Any]:
        """The factorized layers of ``model``."""
        kinds = (TensorConv2d, TensorLinear, MatrixConv2d, MatrixLinear)
        return [m for m in model.modules() if isinstance(m, kinds)]

    def make_optimizer(self, model: nn.Module, training: Any) -> torch.optim.Optimizer:
        """The suite's optimizer; with ``frobenius_decay`` the factors form a group without weight decay (the
        decay of their product is in the loss, :meth:`train_step`)."""
        if self.params.frobenius_decay is None:
            return super().make_optimizer(model, training)
        factors = [p for layer in self.factorized_layers(model) for p in layer.factor_parameters()]
        ids = {id(p) for p in factors}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return build_optimizer([{"params": rest}, {"params": factors, "weight_decay": 0.0}], training)

    def frobenius_penalty(self, model: nn.Module) -> Any:
        """``frobenius_decay / 2 * sum ||W||_F^2`` over the factorized layers (0 without any)."""
        decay = self.params.frobenius_decay or 0.0
        return 0.5 * decay * sum(layer.frobenius_sq() for layer in self.factorized_layers(model))

    def train_step(self, model, optimizer, batch, loss_fn) -> torch.Tensor:
        """One step; with ``frobenius_decay`` the penalty joins the loss that is differentiated (the loss returned,
        and recorded as the train loss, is the data loss alone)."""
        if self.params.frobenius_decay is None:
            return super().train_step(model, optimizer, batch, loss_fn)
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        with full_precision(x.device):  # the penalty in float32 whatever training.precision is
            penalty = self.frobenius_penalty(model)
        self.precision.backward(loss + penalty)
        self.precision.step(optimizer)
        return loss.detach()

    def layer_stats(self, model: nn.Module) -> list[LayerStats]:
        stats = layer_report(model)
        for s in stats:
            plan = self.plans.get(s.name)
            if plan is not None and plan.skip:
                s.extra = {**s.extra, "skipped": plan.skip, **plan.extra}
        return stats


def fixed_rank_method(fmt: type[Format]) -> type[FixedRankMethod]:
    """The registered method of a format: a ``FixedRankMethod`` named like the format, with its Params."""
    name = f"{fmt.__name__}Method"
    cls = type(
        name,
        (FixedRankMethod,),
        {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": fmt.__doc__,
            "name": fmt.name,
            "Format": fmt,
            "Params": fmt.Params,
        },
    )
    return register_method(fmt.name)(cls)


TuckerMethod = fixed_rank_method(Tucker)
CPMethod = fixed_rank_method(CP)
TTMethod = fixed_rank_method(TT)
MatrixMethod = fixed_rank_method(Matrix)
