"""What factorized methods share: which layers to factorize, and replacing modules by name."""

from __future__ import annotations

import fnmatch

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


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` was."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
