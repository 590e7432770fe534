"""Which layers a method factorizes or prunes, and putting a new module where an old one was.

Every method that replaces layers selects them with :func:`select_layers` (one pattern language for all
methods: shell-style patterns over module names) and swaps them with :func:`replace_module`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import torch
from torch import nn

FACTORIZABLE = (nn.Conv2d, nn.Linear)


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of every conv and linear layer, in module order."""
    return [n for n, m in model.named_modules() if isinstance(m, FACTORIZABLE)]


def select_layers(model: nn.Module, patterns: list[str] | None = None) -> list[str]:
    """Layers to factorize: by default every conv/linear except the first conv and the last linear;
    ``patterns`` (shell-style, matched against module names) overrides the default."""
    names = candidate_layers(model)
    if patterns is not None:
        return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    modules = dict(model.named_modules())
    convs = [n for n in names if isinstance(modules[n], nn.Conv2d)]
    linears = [n for n in names if isinstance(modules[n], nn.Linear)]
    drop = set(convs[:1]) | set(linears[-1:])
    return [n for n in names if n not in drop]


def unmatched_patterns(model: nn.Module, patterns: list[str]) -> list[str]:
    """The shell patterns of ``patterns`` that match no conv/linear layer of ``model`` (likely typos)."""
    names = candidate_layers(model)
    return [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in names)]


def pattern_problems(model: nn.Module, patterns: list[str] | None, key: str = "layers") -> list[tuple[str, str]]:
    """``[(key, message)]`` when shell patterns of ``patterns`` match no conv/linear layer of ``model`` (the
    form ``Method.model_problems`` returns), else ``[]``."""
    missing = unmatched_patterns(model, patterns) if patterns is not None else []
    if not missing:
        return []
    return [
        (key, f"layer pattern(s) {missing} match no conv/linear layer; layers: {', '.join(candidate_layers(model))}")
    ]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` was."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def generator_seed(generator: torch.Generator) -> int:
    """An integer seed drawn from ``generator`` (for libraries that take an int, e.g. tensorly)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())


def resize_tensors(model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Give each parameter and buffer of ``model`` named in ``shapes`` (``state_dict`` names) that shape, where it
    has another: a new uninitialized tensor of its dtype and device (a parameter stays a parameter, trainable as it
    was), to be filled by ``load_state_dict``. Names ``model`` does not have are left to ``load_state_dict`` to
    report. Returns the names resized."""
    resized = []
    for name, shape in shapes.items():
        owner, _, attr = name.rpartition(".")
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            continue
        old = module._parameters.get(attr, module._buffers.get(attr))
        if old is None or tuple(old.shape) == tuple(shape):
            continue
        new = torch.empty(tuple(shape), dtype=old.dtype, device=old.device)
        setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad) if attr in module._parameters else new)
        resized.append(name)
    return resized
