"""The full (unfactorized) baseline: every layer dense, one forward/backward/step per batch."""

from __future__ import annotations

import torch
from torch import nn

from harness import Method, register_method

_INITS = {
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "xavier_normal": nn.init.xavier_normal_,
    "orthogonal": nn.init.orthogonal_,
}


@register_method("full")
class FullMethod(Method):
    """Full baseline: the dense architecture, trained as usual."""

    # "pytorch" keeps PyTorch's default layer initialization (Kaiming-uniform with a=sqrt(5)).
    initializations = ("pytorch", *_INITS)

    def prepare(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        init = _INITS.get(self.initialization)
        if init is not None:
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, nn.Conv2d | nn.Linear):
                        init(m.weight)
                        if m.bias is not None:
                            m.bias.zero_()
        return model
