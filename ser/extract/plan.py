"""Batch planning: which manifest rows share a forward pass, longest first.

Audio batches hold at most ``batch_seconds`` of padded audio and ``batch_items`` items, so an
out-of-memory error shows up with the first batch. Extractors that must not see padding only get
items of identical length together; Whisper-style extractors that pad every input to a fixed window
are planned by that window. Text and mocap batches are limited by ``batch_items`` only (their
"duration" means nothing to a compute budget).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ser.extract.base import ExtractorSpec
from ser.manifests.audio_info import AudioInfoError, probe_duration
from ser.manifests.schema import Manifest, Utterance


def plan_extractor_batches(
    manifest: Manifest, rows: Sequence[Utterance], spec: ExtractorSpec, *, batch_seconds: float, batch_items: int
) -> list[list[int]]:
    """Indices of ``rows`` in the batches ``spec``'s extractor gets (see
    [`plan_batches`][ser.extract.plan.plan_batches])."""
    audio = spec.modality == "audio"
    return plan_batches(
        rows,
        row_durations(manifest, rows, spec.modality),
        batch_seconds=batch_seconds if audio else math.inf,
        batch_items=batch_items,
        same_length_only=audio and not spec.supports_padding,
        window_seconds=spec.window_seconds if audio else None,
    )


def plan_batches(
    rows: Sequence[Utterance],
    durations: Sequence[float],
    *,
    batch_seconds: float,
    batch_items: int,
    same_length_only: bool,
    window_seconds: float | None = None,
) -> list[list[int]]:
    """Indices of ``rows`` grouped into batches, longest first.

    A batch's cost is its padded size: ``len(batch) * longest``. With ``window_seconds`` every item
    is padded to whole windows by the model itself (Whisper: 30 s), so an item costs
    ``ceil(duration / window) * window`` and a batch the sum of its items' costs. With
    ``same_length_only`` a batch holds items of identical duration only. ``batch_seconds`` may be
    ``math.inf`` (batches limited by ``batch_items`` only).
    """
    order = sorted(range(len(rows)), key=lambda i: (-durations[i], rows[i].id))
    batches: list[list[int]] = []
    current: list[int] = []
    spent = 0.0
    for index in order:
        cost = window_cost(durations[index], window_seconds) if window_seconds else 0.0
        if current:
            if window_seconds:
                fits = spent + cost <= batch_seconds
            else:
                fits = (len(current) + 1) * durations[current[0]] <= batch_seconds
            fits = fits and len(current) < batch_items
            if same_length_only and durations[index] != durations[current[0]]:
                fits = False
            if not fits:
                batches.append(current)
                current, spent = [], 0.0
        current.append(index)
        spent += cost
    if current:
        batches.append(current)
    return batches


def window_cost(seconds: float, window: float) -> float:
    """Seconds of model input for ``seconds`` of audio cut into ``window``-second padded chunks (at least one)."""
    return max(1, math.ceil(seconds / window - 1e-9)) * window


def row_durations(manifest: Manifest, rows: Sequence[Utterance], modality: str) -> list[float]:
    """Duration of each row, from the manifest or (when missing) the audio header; rows of text and
    mocap extractors without a duration use their text length (for ordering only)."""
    durations = []
    for row in rows:
        if row.duration is not None:
            durations.append(float(row.duration))
        elif row.audio is not None and row.start is not None and row.end is not None:
            durations.append(row.end - row.start)
        elif row.audio is not None and modality == "audio":
            try:
                durations.append(probe_duration(manifest.audio_path(row)))  # type: ignore[arg-type]
            except AudioInfoError:
                durations.append(0.0)  # decoding will reject it with the precise reason
        else:
            durations.append(float(len(row.text or "")))
    return durations
