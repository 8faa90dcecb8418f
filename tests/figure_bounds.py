"""Checks on drawn figures: every piece of text lies inside the figure (nothing cut at an edge), and no
two tick labels of one axis overlap."""

from __future__ import annotations

import itertools
import math
from typing import Any


def draw(fig: Any) -> Any:
    """Lay out and draw ``fig`` on an Agg canvas (as saving does); returns the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def undrawn_tick_labels(fig: Any) -> list[Any]:
    """Tick labels an axis keeps but does not draw: their tick lies outside the axis's view limits."""
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - span <= tick.get_loc() <= high + span:
                    out += [tick.label1, tick.label2]
    return out


def texts_outside(fig: Any, slack: float = 0.5) -> list[str]:
    """The visible, non-empty texts of ``fig`` (titles, labels, tick labels, legend entries, cell numbers)
    whose drawn extent leaves the figure by more than ``slack`` pixels."""
    from matplotlib.text import Text

    renderer = draw(fig)
    frame = fig.bbox
    hidden = {id(text) for text in undrawn_tick_labels(fig)}
    out = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        box = text.get_window_extent(renderer)
        if (
            box.x0 < frame.x0 - slack
            or box.y0 < frame.y0 - slack
            or box.x1 > frame.x1 + slack
            or box.y1 > frame.y1 + slack
        ):
            out.append(f"{text.get_text()!r} at {box.bounds} outside {frame.bounds}")
    return out


def overlapping_tick_labels(ax: Any, axis: str) -> list[tuple[str, str]]:
    """Pairs of neighbouring ``axis`` ("x" or "y") tick labels of ``ax`` that overlap: the drawn extents of
    upright labels, or, for slanted labels (parallel lines of text), the distance between neighbours'
    lines against the text height."""

    renderer = draw(ax.figure)
    labels = [t for t in getattr(ax, f"get_{axis}ticklabels")() if t.get_visible() and t.get_text()]
    out = []
    for a, b in itertools.pairwise(labels):
        box_a, box_b = a.get_window_extent(renderer), b.get_window_extent(renderer)
        angle = math.radians(a.get_rotation())
        if abs(math.sin(angle)) < 1e-6 or abs(math.cos(angle)) < 1e-6:  # upright or vertical
            clash = box_a.overlaps(box_b)
        else:
            step = abs(box_b.x0 - box_a.x0) if axis == "x" else abs(box_b.y0 - box_a.y0)
            gap = step * abs(math.sin(angle) if axis == "x" else math.cos(angle))
            clash = gap < renderer.points_to_pixels(a.get_fontsize())
        if clash:
            out.append((a.get_text(), b.get_text()))
    return out
