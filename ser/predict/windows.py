"""Long recordings: class probabilities per window, as a timeline table and a plot.

A recording of ``d`` seconds is cut into windows of ``window`` seconds every ``hop`` seconds,
starting at 0: ``[k*hop, k*hop + window]`` for every k with ``k*hop + window <= d``, plus one
window ending exactly at ``d`` when the hops leave a tail uncovered, so the whole recording is
covered; a recording shorter than a window is one window ``[0, d]``. Each window is read from the
file on its own (soundfile seeks to it), so memory stays flat whatever the recording's length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ser.errors import UserError
from ser.fusion.plots import pyplot_or_none
from ser.predict.model import Prediction, Request

EPSILON = 1e-9


def plan_windows(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of every window of a ``duration``-second recording (module docstring)."""
    if not window > 0 or not hop > 0 or not math.isfinite(window) or not math.isfinite(hop):
        raise UserError(f"--window and --hop must be positive seconds (got window {window}, hop {hop})")
    if duration <= window + EPSILON:
        return [(0.0, float(duration))]
    count = math.floor((duration - window) / hop + EPSILON) + 1
    spans = [(k * hop, k * hop + window) for k in range(count)]
    if duration - spans[-1][1] > EPSILON:
        spans.append((duration - window, float(duration)))
    return spans


def window_requests(path: Path, duration: float, window: float, hop: float) -> list[Request]:
    """One :class:`Request` per window of ``path`` (id = the file path)."""
    return [
        Request(id=str(path), path=path, start=start, end=end) for start, end in plan_windows(duration, window, hop)
    ]


def plot_timeline(path: Path, predictions: list[Prediction], classes: tuple[str, ...], title: str) -> bool:
    """Class probabilities over time (window centres), one line per class; windows that failed are
    gaps. Returns False (logged) when matplotlib is missing."""
    plt = pyplot_or_none(path)
    if plt is None:
        return False
    centres = [((p.start or 0.0) + (p.end or 0.0)) / 2 for p in predictions]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for name in classes:
        values: list[Any] = [p.probabilities.get(name, math.nan) if p.probabilities else math.nan for p in predictions]
        ax.plot(centres, values, label=name, linewidth=1.4)
    ax.set_xlabel("time (s), window centre")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
