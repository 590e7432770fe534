"""The full (unfactorized) baseline: every layer dense, one forward/backward/step per batch."""

from __future__ import annotations

import torch
from torch import nn

from harness import Method, register_method

#: The dense initializations beside PyTorch's default (Kaiming-uniform with a=sqrt(5), called ``pytorch``): each
#: conv/linear weight drawn by the function, biases zero. The pruning methods start from the same ones.
DENSE_INITS = {
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "xavier_normal": nn.init.xavier_normal_,
    "orthogonal": nn.init.orthogonal_,
}
DENSE_INITIALIZATIONS = ("pytorch", *DENSE_INITS)


def initialize_dense(model: nn.Module, initialization: str) -> None:
    """Initialize every conv/linear layer of ``model`` by ``initialization`` (``pytorch``: leave them)."""
    init = DENSE_INITS.get(initialization)
    if init is None:
        return
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                init(m.weight)
                if m.bias is not None:
                    m.bias.zero_()


@register_method("full")
class FullMethod(Method):
    """Full baseline: the dense architecture, trained as usual."""

    # "pytorch" keeps PyTorch's default layer initialization (Kaiming-uniform with a=sqrt(5)).
    initializations = DENSE_INITIALIZATIONS
    pretrained_initializations = ("pytorch",)  # "pytorch" leaves the layers as they are: the trained weights

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        initialize_dense(model, self.initialization)
        return model
