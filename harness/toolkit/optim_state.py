"""Change a parameter's shape during training while torch's own optimizer keeps its state.

Rank-adaptive methods replace a factor or core by one of another shape (augmentation, truncation, pruning).
The new tensor becomes a new ``nn.Parameter`` that takes the old one's place in the optimizer's parameter
groups, and the optimizer's per-parameter state moves with it: every state tensor shaped like the parameter
(SGD's ``momentum_buffer``, Adam/AdamW's ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) is mapped by a
``transport(name, tensor)`` the method supplies (the same change of coordinates as the parameter, or a reset),
everything else (Adam's ``step``) is kept. So momentum, Nesterov, weight decay and Adam's moments all come from
``torch.optim.SGD``/``Adam``/``AdamW``; the method only says how its coordinates changed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Transport = Callable[[str, torch.Tensor], torch.Tensor]

SECOND_MOMENTS = frozenset({"exp_avg_sq", "max_exp_avg_sq"})


def moment_transport(
    first: Callable[[torch.Tensor], torch.Tensor], second: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Transport:
    """A transport for the state of torch's SGD/Adam/AdamW: ``second`` for Adam's second moments (``exp_avg_sq``,
    ``max_exp_avg_sq``), ``first`` for every other state tensor (momentum buffer, first moment). ``second``
    defaults to ``first`` (right for maps that keep non-negative tensors non-negative, such as zero padding or
    selecting entries)."""
    sec = first if second is None else second

    def transport(name: str, t: torch.Tensor) -> torch.Tensor:
        return sec(t) if name in SECOND_MOMENTS else first(t)

    return transport


def swap_parameter(
    optimizer: torch.optim.Optimizer | None,
    old: torch.Tensor,
    new: torch.Tensor,
    transport: Transport | None = None,
) -> bool:
    """Put ``new`` where ``old`` is in ``optimizer``'s parameter groups and move its state: state tensors of
    ``old``'s shape through ``transport(name, tensor)``, other entries (step counts) as they are. Without a
    ``transport`` the state is dropped, so the optimizer starts it afresh. Returns whether ``optimizer`` held
    ``old`` (``False``, changing nothing, for ``None`` or an optimizer without it)."""
    if optimizer is None:
        return False
    for group in optimizer.param_groups:
        params = group["params"]
        for j, p in enumerate(params):
            if p is old:
                params[j] = new
                break
        else:
            continue
        break
    else:
        return False
    state = optimizer.state.pop(old, None)
    if state and transport is not None:
        optimizer.state[new] = {
            k: transport(k, v) if torch.is_tensor(v) and v.dim() > 0 and v.shape == old.shape else v
            for k, v in state.items()
        }
    return True


def reshape_parameter(
    module: nn.Module,
    name: str,
    value: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    transport: Transport | None = None,
) -> nn.Parameter:
    """Replace the parameter ``module.<name>`` by a new ``nn.Parameter`` holding ``value`` (any shape), in the
    module and, through :func:`swap_parameter`, in ``optimizer`` with its state transported. Returns the new
    parameter."""
    old = getattr(module, name)
    new = nn.Parameter(value.detach().contiguous(), requires_grad=old.requires_grad)
    setattr(module, name, new)
    swap_parameter(optimizer, old, new, transport)
    return new
