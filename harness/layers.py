"""Per-layer statistics and the parameter counts and compression rates derived from them.

The engine knows two kinds of layers: dense ``nn.Conv2d``/``nn.Linear``, and any module that reports
itself through a ``layer_stats(name) -> LayerStats`` method (factorized layers of methods do). All
counts and compression rates of every method come from :func:`layer_report` and :func:`parameter_summary`,
so every method is measured by the same definitions (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class LayerStats:
    """What one (dense or factorized) layer costs.

    ``dense_params``: parameters of the dense layer it replaces (weight + bias);
    ``params``: parameters needed at inference (a dense layer: its nonzero weights and its whole bias);
    ``train_params``: parameters the optimizer holds during training (e.g. augmented bases, a pruned layer's
    whole weight), ``ranks``: per-mode ranks where the layer has them; ``storage``: numbers stored to deploy the
    layer (:func:`weight_storage`; ``None``: ``params``, as for factorized layers, which are stored dense).
    """

    name: str
    kind: str  # "conv" or "linear"
    shape: list[int]
    dense_params: int
    params: int
    train_params: int
    ranks: list[int] | None = None
    format: str = "dense"
    extra: dict[str, Any] = field(default_factory=dict)
    storage: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weight_storage(weight: torch.Tensor) -> int:
    """Numbers stored to deploy a weight: the smaller of its dense size and its CSR form as a matrix
    (out, in*kh*kw): the nonzero values, their column indices and out + 1 row pointers."""
    rows = weight.shape[0] if weight.dim() else 1
    nonzero = int(torch.count_nonzero(weight.detach()))
    return min(weight.numel(), 2 * nonzero + rows + 1)


def _dense_stats(name: str, module: nn.Module) -> LayerStats:
    """A dense conv/linear layer: its weight's zeros (pruned connections) are not parameters at inference.
    ``module.weight`` is the weight the layer applies (under ``torch.nn.utils.prune``, ``weight_orig * mask``);
    ``train_params`` counts what the layer holds as parameters (a pruned layer: its whole weight)."""
    kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
    held = sum(p.numel() for p in module.parameters(recurse=False))
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    bias = module.bias.numel() if isinstance(module.bias, torch.Tensor) else 0
    nonzero = int(torch.count_nonzero(weight.detach()))
    extra = {"sparsity": 1.0 - nonzero / weight.numel()} if nonzero < weight.numel() else {}
    return LayerStats(
        name,
        kind,
        list(weight.shape),
        weight.numel() + bias,
        nonzero + bias,
        held,
        format="sparse" if extra else "dense",
        extra=extra,
        storage=weight_storage(weight) + bias,
    )


def layer_report(model: nn.Module) -> list[LayerStats]:
    """Stats of every conv/linear layer, dense or factorized, in module order."""
    out: list[LayerStats] = []
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(s + ".") for s in skip):
            continue
        report = getattr(module, "layer_stats", None)
        if callable(report) and module is not model:
            out.append(report(name))
            skip.append(name)
        elif isinstance(module, nn.Conv2d | nn.Linear):
            out.append(_dense_stats(name, module))
    return out


def parameter_summary(model: nn.Module, layers: list[LayerStats], full_params: int) -> dict[str, Any]:
    """Parameter counts and compression rates of a model, given its layer report.

    Parameters outside reported layers (BatchNorm, free biases) count in full. Compression is
    ``1 - P / P_full`` with ``P_full`` the same architecture's dense parameter count. ``params_storage`` counts
    the numbers stored to deploy the model: each layer's ``storage`` (a sparse weight as CSR where that is
    smaller, see :func:`weight_storage`), every other parameter in full.
    """
    reported = {n for n in (s.name for s in layers)}
    other = 0
    for name, module in model.named_modules():
        if name in reported or any(name.startswith(r + ".") for r in reported if r):
            continue
        other += sum(p.numel() for p in module.parameters(recurse=False))
    inference = other + sum(s.params for s in layers)
    training = other + sum(s.train_params for s in layers)
    storage = other + sum(s.params if s.storage is None else s.storage for s in layers)
    conv = [s for s in layers if s.kind == "conv"]
    conv_dense = sum(s.dense_params for s in conv)
    return {
        "params_inference": inference,
        "params_train": training,
        "params_full": full_params,
        "params_storage": storage,
        "compression": 1.0 - inference / full_params,
        "compression_train": 1.0 - training / full_params,
        "compression_conv": (1.0 - sum(s.params for s in conv) / conv_dense) if conv_dense else None,
        "compression_conv_train": (1.0 - sum(s.train_params for s in conv) / conv_dense) if conv_dense else None,
    }
