"""Long recordings: the windows a recording is cut into, one prediction request each (the picture of
the predictions is drawn by ``ser.predict.timeline``).

A recording of ``d`` seconds is cut into windows of ``window`` seconds every ``hop`` seconds,
starting at 0: ``[k*hop, k*hop + window]`` for every k with ``k*hop + window <= d``, plus one
window ending exactly at ``d`` when the hops leave a tail uncovered, so the whole recording is
covered; a recording shorter than a window is one window ``[0, d]``. Each window is read from the
file on its own (soundfile seeks to it), so memory stays flat whatever the recording's length.
"""

from __future__ import annotations

import math
from pathlib import Path

from ser.errors import UserError
from ser.predict.model import Request

EPSILON = 1e-9

MAX_WINDOWS = 100_000
"""The most windows one recording may be cut into (one prediction each): bounds the memory before any
window is planned (a day of audio at a 1-s hop is 86400)."""


def plan_windows(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of every window of a ``duration``-second recording (module docstring)."""
    if not window > 0 or not hop > 0 or not math.isfinite(window) or not math.isfinite(hop):
        raise UserError(f"--window and --hop must be positive seconds (got window {window}, hop {hop})")
    if duration <= window + EPSILON:
        return [(0.0, float(duration))]
    count = math.floor((duration - window) / hop + EPSILON) + 1
    if count > MAX_WINDOWS:
        raise UserError(
            f"--window {window:g} --hop {hop:g} cut a {duration:g} s recording into {count} windows (at most "
            f"{MAX_WINDOWS}); choose a longer --hop"
        )
    spans = [(k * hop, k * hop + window) for k in range(count)]
    if duration - spans[-1][1] > EPSILON:
        spans.append((duration - window, float(duration)))
    return spans


def window_requests(path: Path, duration: float, window: float, hop: float) -> list[Request]:
    """One ``Request`` per window of ``path`` (id = the file path)."""
    return [
        Request(id=str(path), path=path, start=start, end=end) for start, end in plan_windows(duration, window, hop)
    ]
