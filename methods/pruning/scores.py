"""Connection scores at initialization: SNIP (Lee et al., ICLR 2019) and GraSP (Wang et al., ICLR 2020).

Both are computed on the training batches given, each batch's loss being the mean over its images; over several
batches the gradient (and GraSP's Hessian-gradient product) is their mean, so the scores are those of the mean
loss over the batches. Scoring leaves the model as it was (BatchNorm's running statistics included).

* SNIP: ``s = |g * w|`` with ``g = dL/dw``: the magnitude of the loss's derivative with respect to a multiplicative
  mask on the connection (the paper's connection sensitivity before its normalisation by the sum, which does not
  change the ranking). The lowest scores are removed.
* GraSP: ``S = -w * (H g)`` with ``g`` the gradient and ``H`` the Hessian of the loss over every trainable
  parameter of the model (biases, BatchNorm and unpruned layers included: the gradient norm the paper preserves
  is the whole model's), ``H g`` by double backpropagation (the gradient of ``g(w) . stop_gradient(g)``). The
  paper removes the weights of **highest** score: removing them reduces the gradient norm least, to first order
  (or increases it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Train mode inside the block; the model's buffers (BatchNorm's running statistics) and mode restored after."""
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        model.train(was_training)


def _mean_gradient(
    model: nn.Module, params: list[torch.Tensor], batches: list[Batch], loss_fn: LossFn
) -> list[torch.Tensor]:
    total = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x), y), params, allow_unused=True)
        for t, g in zip(total, grads, strict=True):
            if g is not None:
                t += g / len(batches)
    return total


def snip_scores(
    model: nn.Module, weights: list[torch.Tensor], batches: list[Batch], loss_fn: LossFn
) -> list[torch.Tensor]:
    """SNIP's ``|dL/dw * w|`` for each tensor of ``weights`` (parameters of ``model``)."""
    with untouched(model):
        grads = _mean_gradient(model, weights, batches, loss_fn)
    return [(g * w.detach()).abs() for g, w in zip(grads, weights, strict=True)]


def grasp_scores(
    model: nn.Module, weights: list[torch.Tensor], batches: list[Batch], loss_fn: LossFn
) -> list[torch.Tensor]:
    """GraSP's ``-w * (H g)`` for each tensor of ``weights``, with ``g`` and ``H`` over every trainable parameter
    of ``model`` (``weights`` among them)."""
    params = [p for p in model.parameters() if p.requires_grad]
    index = {id(p): i for i, p in enumerate(params)}
    missing = [i for i, w in enumerate(weights) if id(w) not in index]
    if missing:
        raise ValueError("GraSP scores weights that are trainable parameters of the model")
    with untouched(model):
        g = _mean_gradient(model, params, batches, loss_fn)
        hg = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            grads = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True, allow_unused=True)
            z = sum((gb * gm).sum() for gb, gm in zip(grads, g, strict=True) if gb is not None)
            assert isinstance(z, torch.Tensor)
            for t, h in zip(hg, torch.autograd.grad(z, params, allow_unused=True), strict=True):
                if h is not None:
                    t += h / len(batches)
    return [-(w.detach() * hg[index[id(w)]]) for w in weights]
