"""Typer command and group classes whose ``--help`` shows a flag (``--force``, ``--help``) without a value type.

Recent typer prints every option's type in the help table, flags too (``--force  <bool>``), though a flag takes
no value; these classes blank the type of flags so their help reads ``--force  Train every run again...``.
"""

from __future__ import annotations

from typing import Any

import typer.core


def untyped_flags(params: list[Any]) -> list[Any]:
    """The parameters, each flag's shown type (its metavar) set to nothing."""
    for p in params:
        if getattr(p, "is_flag", False):
            p.metavar = ""
    return params


class Command(typer.core.TyperCommand):
    """A command whose help shows flags without a type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return untyped_flags(super().get_params(ctx))


class Group(typer.core.TyperGroup):
    """The top-level group, its help showing flags without a type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return untyped_flags(super().get_params(ctx))
