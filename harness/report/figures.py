"""What every figure of the report shares: method colours, line styles, titles, file names and saving."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .atomic import replacing
from .summary import DEFAULT_REFERENCE

LINESTYLES = ("-", "--", ":", "-.")
# Every figure's file name starts with its kind: a rebuild tells its own (stale) figures by these names.
FIGURE_KINDS = ("acc_vs_compression", "critical_difference", "curves", "init_robustness", "ranks")
FIGURE_SUFFIXES = (".png", ".svg")
MODE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


@dataclass
class PlotFile:
    """One saved figure."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def method_colors(methods: Iterable[str], reference: str = DEFAULT_REFERENCE) -> dict[str, Any]:
    """A fixed colour per method: dark grey for the reference method, tab10 (without its grey) for the rest."""
    others = sorted({m for m in methods if m != reference})
    palette = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7]
    if len(others) > len(palette):
        palette = sns.color_palette("husl", len(others))
    colors: dict[str, Any] = {m: palette[i] for i, m in enumerate(others)}
    colors[reference] = (0.2, 0.2, 0.2)
    return colors


def slug(*parts: Any) -> str:
    """File-name part: ``mnist_subset-lenet5-train_subset-1000``."""
    text = "-".join(str(p) for p in parts if str(p) not in ("", "none"))
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120] or "all"


def group_title(keys: list[str], values: tuple) -> str:
    """``mnist / lenet5`` plus ``(budget: ...; epochs=3)`` where the group has a budget or its own training."""
    d = dict(zip(keys, values, strict=True))
    title = f"{d['dataset']} / {d['model']}"
    budget = d.get("budget", "none")
    extra = [f"budget: {budget}"] if budget != "none" else []
    settings = [f"{k.removeprefix('training.')}={v}" for k, v in d.items() if k.startswith("training.")]
    extra += [s for s in settings if budget == "none" or s not in budget.split(", ")]  # said once
    return title + (f" ({'; '.join(extra)})" if extra else "")


def figure_title(title: str) -> str:
    """A long title broken before its parenthesis, so that it fits above the plot."""
    return title.replace(" (", "\n(", 1) if len(title) > 60 else title


def is_figure_file(name: str) -> bool:
    """Whether a file name is one a report's figure is saved under (``curves_mnist-lenet5.png``)."""
    stem, suffix = Path(name).stem, Path(name).suffix
    return suffix in FIGURE_SUFFIXES and any(stem.startswith(f"{kind}_") for kind in FIGURE_KINDS)


def save(fig: Figure, out: Path, name: str, title: str, caption: str) -> PlotFile:
    if not is_figure_file(f"{name}.png"):  # else a rebuild would not know the file as its own
        raise ValueError(f"figure name {name!r} must start with one of {', '.join(FIGURE_KINDS)} and '_'")
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    for path, dpi in ((png, 150), (svg, None)):
        # SVG keeps its text as text (searchable, selectable, read by screen readers), not as glyph outlines
        with replacing(path) as tmp, matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(tmp, format=path.suffix[1:], dpi=dpi or "figure")
    return PlotFile(name, title, caption, png, svg)


def groups(df: pd.DataFrame, keys: list[str]):
    if df.empty:
        return
    yield from df.groupby(keys, sort=False, dropna=False)
