"""The picture of a windowed prediction: which class wins when, and how sure the model is.

Two panels share one time axis in seconds: on top a strip with one coloured cell per window, the
window's most probable class (colour key beside it); below a heatmap, classes x time, colour = the
class probability (colorbar beside it). Each window's cell spans from halfway to the previous
window's centre to halfway to the next one's (the first starts at its window's start, the last ends at
its window's end), so overlapping windows tile the recording without gaps. Windows that failed are
grey in both panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.fusion.plots import matplotlib_ready, new_figure, save_figure, wrap_lines
from ser.predict.model import Prediction

FAILED_COLOUR = "0.8"
KEY_COLUMNS = 10
"""Classes per row of the colour key."""


@dataclass(frozen=True)
class Timeline:
    """Windowed predictions as arrays, in time order."""

    edges: np.ndarray
    """(T + 1,) seconds: window t's cell spans ``edges[t]`` to ``edges[t + 1]``."""
    probabilities: np.ndarray
    """(C, T) class probabilities; NaN for a window that failed."""
    top: np.ndarray
    """(T,) int index of the most probable class; -1 for a window that failed."""


def timeline_arrays(predictions: Sequence[Prediction], classes: Sequence[str]) -> Timeline:
    """The ``Timeline`` of windowed ``predictions`` (sorted by window centre; module docstring).

    :raises ValueError: when there is no prediction or one has no window (``start`` / ``end``).
    """
    if not predictions:
        raise ValueError("a timeline needs at least one windowed prediction")
    unplaced = [p.id for p in predictions if p.start is None or p.end is None]
    if unplaced:
        raise ValueError(f"{len(unplaced)} predictions have no window (start, end), e.g. {unplaced[0]}")
    ordered = sorted(predictions, key=lambda p: float(p.start or 0.0) + float(p.end or 0.0))
    starts = np.asarray([p.start for p in ordered], dtype=np.float64)
    ends = np.asarray([p.end for p in ordered], dtype=np.float64)
    centres = (starts + ends) / 2
    edges = np.concatenate([[starts[0]], (centres[:-1] + centres[1:]) / 2, [ends[-1]]])
    probabilities = np.full((len(classes), len(ordered)), np.nan)
    for t, prediction in enumerate(ordered):
        if prediction.probabilities:
            probabilities[:, t] = [prediction.probabilities.get(name, np.nan) for name in classes]
    failed = np.isnan(probabilities).all(axis=0)
    top = np.where(failed, -1, np.argmax(np.nan_to_num(probabilities, nan=-1.0), axis=0))
    return Timeline(edges=edges, probabilities=probabilities, top=top)


def class_colours(count: int) -> list[Any]:
    """``count`` distinct RGBA colours, one per class: tab10 (up to 9 classes) or tab20, without their greys
    (grey marks a failed window); beyond 18 classes the colours repeat."""
    from matplotlib import colormaps

    name, greys = ("tab10", {7}) if count <= 9 else ("tab20", {14, 15})
    palette = colormaps[name]
    usable = [palette(i) for i in range(palette.N) if i not in greys]
    return [usable[i % len(usable)] for i in range(count)]


def timeline_figure(predictions: Sequence[Prediction], classes: Sequence[str], title: str) -> Any:
    """Top-class strip over a probability heatmap (module docstring).

    :param predictions: one per window, with ``start`` / ``end`` seconds; empty probabilities = failed.
    :param classes: the model's C classes (heatmap rows, top to bottom, and colour key order).
    :param title: the figure's title (wrapped to fit).
    :return: the ``matplotlib.figure.Figure``.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    timeline = timeline_arrays(predictions, classes)
    colours = class_colours(len(classes))
    key = [Patch(facecolor=colour, label=name) for name, colour in zip(classes, colours, strict=True)]
    if (timeline.top < 0).any():
        key.append(Patch(facecolor=FAILED_COLOUR, label="window failed"))
    key_columns = min(len(key), KEY_COLUMNS)
    key_rows = -(-len(key) // key_columns)
    heat_height = max(0.28 * len(classes), 1.2)
    fig = new_figure(11.0, 1.3 + 0.22 * key_rows + 0.6 + heat_height)
    strip, heat = fig.subplots(2, 1, sharex=True, height_ratios=[0.6, heat_height])
    strip.legend(
        handles=key, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=key_columns, fontsize=8, frameon=False
    )

    top_colours = ListedColormap(colours).with_extremes(bad=FAILED_COLOUR)
    top = np.ma.masked_less(timeline.top, 0)[np.newaxis, :]  # (1, T)
    strip.pcolormesh(timeline.edges, [0, 1], top, cmap=top_colours, vmin=-0.5, vmax=len(classes) - 0.5)
    strip.set_yticks([])
    strip.set_ylabel("top\nclass", rotation=0, ha="right", va="center")
    strip.tick_params(axis="x", labelbottom=False)

    heat_colours = colormaps["viridis"].with_extremes(bad=FAILED_COLOUR)
    mesh = heat.pcolormesh(
        timeline.edges,
        np.arange(len(classes) + 1),
        np.ma.masked_invalid(timeline.probabilities),
        cmap=heat_colours,
        vmin=0.0,
        vmax=1.0,
    )
    heat.set_yticks(np.arange(len(classes)) + 0.5, classes, fontsize=8)
    heat.invert_yaxis()
    heat.set_xlabel("time (s)")
    heat.set_xlim(timeline.edges[0], timeline.edges[-1])
    fig.colorbar(mesh, ax=heat, label="probability", fraction=0.04, pad=0.01)
    fig.suptitle(wrap_lines([title], 120), fontsize=10)
    return fig


def plot_timeline(path: Path, predictions: list[Prediction], classes: tuple[str, ...], title: str) -> bool:
    """Write ``timeline_figure`` to ``path``. Returns False (logged) when matplotlib is missing."""
    if not matplotlib_ready(path):
        return False
    save_figure(timeline_figure(predictions, classes, title), path)
    return True
