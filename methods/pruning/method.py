"""The pruning methods ``snip``, ``grasp`` and ``imp``: the dense architecture with the selected layers' weights
masked (``torch.nn.utils.prune``), the masks chosen before the loop (``Method.before_training``), then trained as
usual. The algorithms and where they differ from their papers: the package docstring."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from harness import Method, register_method
from harness.method import Batch, LossFn
from harness.session import Session
from harness.toolkit import pattern_problems
from harness_methods.full import DENSE_INITIALIZATIONS, initialize_dense

from .masks import (
    Target,
    prunable,
    prune_lowest,
    removal_count,
    reparametrize_masked,
    rewind,
    state_snapshot,
    weight,
    weight_count,
    zeros,
)
from .params import IMPParams, PruningParams, ScoreParams
from .scores import grasp_scores, snip_scores


class PruningMethod(Method):
    """Base of the pruning methods: the dense model (the ``full`` method's initializations) whose selected layers
    lose ``ceil(sparsity * N)`` of their ``N`` weights before the loop (:meth:`choose_masks`)."""

    Params: ClassVar[type[BaseModel]] = PruningParams
    initializations: ClassVar[tuple[str, ...]] = DENSE_INITIALIZATIONS
    pretrained_initializations: ClassVar[tuple[str, ...]] = ("pytorch",)  # the trained weights, pruned as given

    def model_problems(self, model: nn.Module) -> list[tuple[str, str]]:
        p: PruningParams = self.params  # type: ignore[assignment]
        problems = pattern_problems(model, p.layers)
        if problems:
            return problems
        total = weight_count(prunable(model, p.layers))
        if total == 0:
            return [("layers", "selects no conv or linear layer to prune")]
        if removal_count(p.sparsity, total) >= total:
            return [("sparsity", f"{p.sparsity} removes every one of the {total:,} weights of the selected layers")]
        return []

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        initialize_dense(model, self.initialization)
        problems = self.model_problems(model)
        if problems:
            key, msg = problems[0]
            raise ValueError(f"{self.name}: {key}: {msg}")
        return model

    def match_state(self, model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
        """A trained model's masked weights (``weight_orig``, ``weight_mask``) put under ``torch.nn.utils.prune``
        in the freshly prepared one, so that its state loads (:func:`harness.load_model`)."""
        reparametrize_masked(model, shapes)
        super().match_state(model, shapes)

    def targets(self, model: nn.Module) -> list[Target]:
        """The weights this method prunes."""
        return prunable(model, self.params.layers)  # type: ignore[attr-defined]

    def removal(self, targets: list[Target]) -> int:
        """Weights to remove in all: ``ceil(sparsity * N)``."""
        return removal_count(self.params.sparsity, weight_count(targets))  # type: ignore[attr-defined]

    def before_training(self, model: nn.Module, session: Session) -> None:
        self.choose_masks(model, session, self.targets(model))

    def choose_masks(self, model: nn.Module, session: Session, targets: list[Target]) -> None:
        raise NotImplementedError


class _ScoredAtInit(PruningMethod):
    """Scores every selected weight once, at initialization, on ``score_batches`` training batches; removes the
    lowest-ranked ones over all selected layers together."""

    Params: ClassVar[type[BaseModel]] = ScoreParams

    def ranking(
        self, model: nn.Module, weights: list[torch.Tensor], batches: list[Batch], loss_fn: LossFn
    ) -> list[torch.Tensor]:
        """Per weight tensor, the values whose lowest entries are removed."""
        raise NotImplementedError

    def choose_masks(self, model: nn.Module, session: Session, targets: list[Target]) -> None:
        batches = session.batches(self.params.score_batches)  # type: ignore[attr-defined]
        ranking = self.ranking(model, [weight(t) for t in targets], batches, session.loss_fn)
        prune_lowest(targets, ranking, self.removal(targets))


@register_method("snip")
class SNIPMethod(_ScoredAtInit):
    """SNIP (Lee et al., ICLR 2019): prune at initialization the connections of least sensitivity |g * w|."""

    def ranking(self, model, weights, batches, loss_fn):
        return snip_scores(model, weights, batches, loss_fn)


@register_method("grasp")
class GraSPMethod(_ScoredAtInit):
    """GraSP (Wang et al., ICLR 2020): prune at initialization the weights of highest score -w * (H g)."""

    def ranking(self, model, weights, batches, loss_fn):
        return [-s for s in grasp_scores(model, weights, batches, loss_fn)]  # the highest scores go


@register_method("imp")
class IMPMethod(PruningMethod):
    """Iterative magnitude pruning with rewinding (Frankle & Carbin, ICLR 2019; Frankle et al., ICML 2020)."""

    Params: ClassVar[type[BaseModel]] = IMPParams

    def rewind_step(self, session: Session) -> int:
        """The iteration of the first pass the kept weights are rewound to."""
        p: IMPParams = self.params  # type: ignore[assignment]
        steps = session.training.epochs * session.steps_per_epoch
        k = p.rewind if isinstance(p.rewind, int) else math.floor(p.rewind * steps)
        if k > steps:
            raise ValueError(f"imp: rewind iteration {k} is beyond the {steps} steps of a training pass")
        return k

    def round_removal(self, targets: list[Target], r: int) -> int:
        """Weights removed in all after round ``r`` of ``rounds``: the fraction kept shrinks by the same factor
        each round, ``(1 - sparsity) ** (r / rounds)``; after the last round exactly :meth:`removal`."""
        p: IMPParams = self.params  # type: ignore[assignment]
        if r == p.rounds:
            return self.removal(targets)
        return removal_count(1.0 - (1.0 - p.sparsity) ** (r / p.rounds), weight_count(targets))

    def choose_masks(self, model: nn.Module, session: Session, targets: list[Target]) -> None:
        p: IMPParams = self.params  # type: ignore[assignment]
        k = self.rewind_step(session)
        saved: dict[str, torch.Tensor] = {}

        def keep_early(step: int) -> None:
            if step == k:
                saved.update(state_snapshot(model))

        total = weight_count(targets)
        for r in range(1, p.rounds + 1):
            record: dict[str, Any] = session.train(model, f"imp round {r}", keep_early if r == 1 else None)
            trained = zeros(targets)
            prune_lowest(targets, [weight(t).detach().abs() for t in targets], self.round_removal(targets, r) - trained)
            rewind(model, saved)
            # the pass trained (and its test accuracy was measured) at trained_sparsity; pruning then left sparsity
            record.update(trained_sparsity=trained / total, sparsity=zeros(targets) / total, rewind_step=k)
