"""Point labels that do not overlap: each goes to the nearest free spot around its point, else farther out
with a thin line back to the point.

Greedy and deterministic: labels are placed in the order given, each at the first candidate offset (rings of
growing radius around its point, twelve directions each) whose text box stays inside the axes and overlaps no
label placed before it and no point marker. A label with no free spot takes the candidate that overlaps least.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

RADII = (7.0, 15.0, 24.0, 34.0, 46.0, 60.0, 76.0, 94.0)  # points; beyond LEADER_FROM a label gets a leader line
LEADER_FROM = 10.0
ANGLES = (35, -35, 145, -145, 90, -90, 0, 180, 60, -60, 120, -120)  # degrees, tried in this order on every ring
PAD_PX = 1.5  # kept free around every label
HAlign = Literal["left", "center", "right"]
VAlign = Literal["bottom", "center", "top"]
Offset = tuple[float, float, HAlign, VAlign]


@dataclass(frozen=True)
class Marker:
    """A drawn point to keep labels off: its marker (``size`` points wide) and its vertical error bar."""

    x: float
    y: float
    size: float = 7.0
    yerr: float = 0.0


@dataclass(frozen=True)
class PointLabel:
    """A text to write beside the point ``xy`` (data coordinates)."""

    text: str
    xy: tuple[float, float]
    color: Any = "0.2"
    fontsize: float = 7.0


def candidates(radii: Sequence[float] = RADII, angles: Sequence[int] = ANGLES) -> list[Offset]:
    """Offsets in points, nearest first, with the alignment that keeps the text on that side of the point."""
    out: list[Offset] = []
    for r in radii:
        for a in angles:
            dx, dy = r * math.cos(math.radians(a)), r * math.sin(math.radians(a))
            ha: HAlign = "left" if dx > 0.5 else "right" if dx < -0.5 else "center"
            va: VAlign = "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center"
            out.append((round(dx, 2), round(dy, 2), ha, va))
    return out


def overlap(a: Bbox, b: Bbox) -> float:
    """The area two boxes share (0 when they do not meet)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _marker_boxes(ax: Axes, markers: Sequence[Marker], to_px: float) -> list[Bbox]:
    """Display boxes of the markers and of their error bars (as wide as their caps)."""
    boxes = []
    for m in markers:
        (px, py), half = ax.transData.transform((m.x, m.y)), m.size * to_px / 2
        boxes.append(Bbox.from_extents(px - half, py - half, px + half, py + half))
        if m.yerr > 0:
            lo, hi = ax.transData.transform([(m.x, m.y - m.yerr), (m.x, m.y + m.yerr)])[:, 1]
            cap = 3 * to_px
            boxes.append(Bbox.from_extents(px - cap, lo, px + cap, hi))
    return boxes


def place_labels(fig: Figure, ax: Axes, labels: Sequence[PointLabel], markers: Sequence[Marker] = ()) -> int:
    """Annotate ``ax`` with ``labels`` without overlaps (see the module's docstring), keeping the ``markers``
    clear. Call it once the axes' limits and the legend are set. Returns how many labels got a leader line."""
    if not labels:
        return 0
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # the layout and the limits as they will be saved
    renderer = canvas.get_renderer()
    area = ax.get_window_extent(renderer)
    to_px = fig.dpi / 72.0
    taken = _marker_boxes(ax, markers, to_px)
    offsets = candidates()
    leaders = 0
    for label in labels:
        probe = ax.annotate(label.text, label.xy, xytext=(0, 0), textcoords="offset points", fontsize=label.fontsize)
        best, best_cost, best_box = 0, math.inf, Bbox.null()
        for i, (dx, dy, ha, va) in enumerate(offsets):
            probe.xyann = (dx, dy)
            probe.set_horizontalalignment(ha)
            probe.set_verticalalignment(va)
            box = probe.get_window_extent(renderer).padded(PAD_PX)
            outside = box.width * box.height - overlap(box, area)
            cost = sum(overlap(box, t) for t in taken) + 10 * outside
            if cost < best_cost:
                best, best_cost, best_box = i, cost, box
            if cost == 0:
                break
        probe.remove()
        dx, dy, ha, va = offsets[best]
        leader = math.hypot(dx, dy) > LEADER_FROM
        leaders += leader
        ann = ax.annotate(
            label.text,
            label.xy,
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=label.fontsize,
            color=label.color,
            arrowprops=dict(arrowstyle="-", lw=0.6, color=label.color, alpha=0.7, shrinkA=1, shrinkB=3)
            if leader
            else None,
        )
        ann.set_in_layout(False)  # placed for this layout: it must not change it
        taken.append(best_box)
    return leaders
