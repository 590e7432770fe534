"""The critical-difference diagram of a ranking (Demšar 2006): the methods on an axis of mean ranks (1, the
most accurate, on the left), the critical difference as a bar above it, and methods that do not differ
significantly joined by thick bars below it. Its caption describes only what it draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .figures import PlotFile, save
from .ranking import Ranking


def caption(ranking: Ranking) -> str:
    """What the diagram draws."""
    parts = [
        f"Mean rank of each method over {ranking.n_blocks} blocks (dataset, model, budget), 1 = the most "
        "accurate in a block by its judged test accuracy; one setting represents a method per block."
    ]
    if ranking.cd == ranking.cd:  # not NaN: the test applies
        parts.append(
            f"Bar above the axis: Nemenyi critical difference CD = {ranking.cd:.2f} (α = 0.05, q_α = "
            f"{ranking.q_alpha:.3f}); Friedman χ² = {ranking.friedman_stat:.2f}, p = {ranking.friedman_p:.3g}."
        )
        if ranking.groups:
            parts.append(
                "Thick bars join methods whose mean ranks differ by less than CD (not significantly different)."
            )
        if not ranking.friedman_p < 0.05:
            parts.append("The Friedman test does not reject equal ranks: no difference is significant.")
    return " ".join(parts)


def cd_diagram(ranking: Ranking, out: Path, colors: dict[str, Any]) -> PlotFile | None:
    """The diagram as a figure, or None where nothing is ranked."""
    k = ranking.k
    if k < 2:
        return None
    names = list(ranking.mean_rank.index)
    ranks = ranking.mean_rank.to_numpy(float)
    left = (k + 1) // 2  # the better half is labelled to the left, the rest to the right
    height = 1.6 + 0.32 * max(left, k - left) + 0.22 * len(ranking.groups)
    fig = Figure(figsize=(8.5, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0.3 - 0.25 * k, k + 0.7 + 0.25 * k)
    top = 0.0
    ax.hlines(top, 1, k, color="0.2", lw=1.2)
    for r in range(1, k + 1):
        ax.vlines(r, top, top + 0.12, color="0.2", lw=1.0)
        ax.text(r, top + 0.18, str(r), ha="center", va="bottom", fontsize=9)
    ax.text((1 + k) / 2, top + 0.55, "mean rank", ha="center", va="bottom", fontsize=9, color="0.3")
    if ranking.cd == ranking.cd:
        y = top + 0.95
        ax.hlines(y, 1, 1 + ranking.cd, color="0.1", lw=2)
        ax.vlines([1, 1 + ranking.cd], y - 0.06, y + 0.06, color="0.1", lw=1.5)
        ax.text(1 + ranking.cd / 2, y + 0.1, f"CD = {ranking.cd:.2f}", ha="center", va="bottom", fontsize=9)
    step = 0.32
    for i, (name, r) in enumerate(zip(names, ranks, strict=True)):
        c = colors.get(name, "0.3")
        if i < left:
            y = -(0.45 + step * i) - 0.22 * len(ranking.groups)
            ax.plot([r, r, 0.3 - 0.05 * k], [top, y, y], color=c, lw=1.2)
            ax.text(0.25 - 0.05 * k, y, f"{name} ({r:.2f})", ha="right", va="center", fontsize=9, color=c)
        else:
            y = -(0.45 + step * (k - 1 - i)) - 0.22 * len(ranking.groups)
            ax.plot([r, r, k + 0.7], [top, y, y], color=c, lw=1.2)
            ax.text(k + 0.75, y, f"{name} ({r:.2f})", ha="left", va="center", fontsize=9, color=c)
    rank_of = dict(zip(names, ranks, strict=True))
    for j, group in enumerate(ranking.groups):
        y = -0.18 - 0.22 * j
        lo, hi = rank_of[group[0]], rank_of[group[-1]]
        ax.hlines(y, lo - 0.03, hi + 0.03, color="0.1", lw=4)
    ax.set_ylim(-(0.7 + step * max(left, k - left)) - 0.22 * len(ranking.groups), top + 1.4)
    ax.axis("off")
    title = f"Critical difference diagram — {ranking.n_blocks} blocks, {k} methods"
    fig.suptitle(title)
    return save(fig, out, "critical_difference_all", title, caption(ranking))
