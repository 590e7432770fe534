"""Masks through ``torch.nn.utils.prune``: which weights are prunable, removing the lowest-scored ones over all of
them at once, rewinding, and saving and loading pruned models.

A pruned layer carries torch's reparametrization: its parameter ``weight_orig``, its buffer ``weight_mask`` (0 or
1), and ``weight = weight_orig * weight_mask`` recomputed before every forward pass. The optimizer holds
``weight_orig``; the gradient of a pruned entry is zero and whatever momentum or weight decay does to its
``weight_orig`` entry, the weight the layer applies stays exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from harness.toolkit import select_layers

Target = tuple[nn.Module, str]


def prunable(model: nn.Module, patterns: list[str] | None) -> list[Target]:
    """``(module, "weight")`` of the layers ``patterns`` select (default: as the factorized methods), in module
    order."""
    modules = dict(model.named_modules())
    return [(modules[name], "weight") for name in select_layers(model, patterns)]


def removal_count(sparsity: float, total: int) -> int:
    """Weights removed to reach ``sparsity`` of ``total``: ``ceil(sparsity * total)`` (the product rounded to 9
    decimals first, so that 0.9 * 1000 removes 900), at most ``total``."""
    return min(total, math.ceil(round(sparsity * total, 9)))


class LowestScores(prune.BasePruningMethod):
    """Unstructured pruning of the ``amount`` entries of lowest score (ties in ``torch.topk``'s order). Given to
    ``prune.global_unstructured``, which passes it only the entries not yet pruned."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount: int):
        self.amount = int(amount)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        if self.amount > t.numel():
            raise ValueError(f"cannot prune {self.amount} of {t.numel()} remaining weights")
        mask = default_mask.clone(memory_format=torch.contiguous_format)
        if self.amount:
            mask.view(-1)[torch.topk(t.reshape(-1), k=self.amount, largest=False).indices] = 0
        return mask


def prune_lowest(targets: list[Target], scores: list[torch.Tensor], count: int) -> None:
    """Remove the ``count`` weights of lowest score among the unpruned weights of all ``targets`` together
    (``prune.global_unstructured``); ``scores[i]`` is shaped like ``targets[i]``'s weight."""
    importance = {t: s.detach() for t, s in zip(targets, scores, strict=True)}
    prune.global_unstructured(targets, pruning_method=LowestScores, importance_scores=importance, amount=count)


def weight(target: Target) -> torch.Tensor:
    """The weight a target applies: the parameter itself, or once pruned ``weight_orig * weight_mask`` as it
    stands now (the module's own ``weight`` attribute is refreshed only by its next forward pass)."""
    module, name = target
    if hasattr(module, name + "_mask"):
        return getattr(module, name + "_orig") * getattr(module, name + "_mask")
    return getattr(module, name)


def weight_count(targets: list[Target]) -> int:
    """Weights of the targets, pruned or not."""
    return sum(getattr(m, n + "_orig", getattr(m, n)).numel() for m, n in targets)


def zeros(targets: list[Target]) -> int:
    """Entries of the targets' masks that are zero (pruned), in all (0 before any pruning)."""
    return sum(int((getattr(m, n + "_mask") == 0).sum()) for m, n in targets if hasattr(m, n + "_mask"))


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's parameters and buffers (its state dict, cloned)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def rewind(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Set every parameter and buffer of ``model`` to its value in ``snapshot`` (a :func:`state_snapshot` taken
    before pruning); a pruned weight's ``<name>_orig`` takes the snapshot's ``<name>``, its mask stays."""
    state = model.state_dict()
    for key, value in snapshot.items():
        target = key if key in state else key + "_orig"
        state[target].copy_(value)


def pruned_names(module: nn.Module) -> list[str]:
    """The names of the tensors of ``module`` under a pruning reparametrization."""
    hooks = module._forward_pre_hooks.values()
    return [h._tensor_name for h in hooks if isinstance(h, prune.BasePruningMethod)]


def make_permanent(model: nn.Module) -> None:
    """Drop every pruning reparametrization: each pruned tensor becomes a plain parameter holding its masked
    value (zeros where pruned), so the model's state dict loads into the dense architecture."""
    for module in model.modules():
        for name in pruned_names(module):
            prune.remove(module, name)


def reparametrize_masked(model: nn.Module, keys: Iterable[str]) -> None:
    """Put every tensor that ``keys`` (a pruned model's state-dict names) hold a mask of (``<name>_mask``) under
    ``prune.identity``, so that the model's state dict has that pruned model's names."""
    modules = dict(model.named_modules())
    for key in keys:
        if key.endswith("_mask"):
            path, _, name = key[: -len("_mask")].rpartition(".")
            module = modules[path]
            if name not in pruned_names(module):
                prune.identity(module, name)


def load_pruned_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the state dict of a pruned model (keys ``<name>_orig`` and ``<name>_mask``) into a model of the same
    architecture, pruned or not: the tensors the state holds masks of are put under ``prune.identity`` first."""
    reparametrize_masked(model, state)
    model.load_state_dict(state)
