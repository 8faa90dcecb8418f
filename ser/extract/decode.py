"""Decoding planned batches in DataLoader worker processes, ahead of the model.

Each dataset index is one planned batch: its rows are decoded and resampled (audio), augmented or
corrupted as the waveform plan says, and come back as [`Decoded`][ser.extract.decode.Decoded] entries. An error while
decoding one row rejects that row only. Cheap CPU extractors (``spec.in_workers``) also compute
their features in the worker, so only features and durations cross the process boundary.
"""

from __future__ import annotations

import functools
import logging
import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset

from ser.devices import free_cached_memory
from ser.extract.audio import AudioError, load_audio
from ser.extract.augment import Plan, apply_chain
from ser.extract.base import Extractor, ExtractorError, Features, Item, ItemRejected
from ser.manifests.schema import Manifest, Utterance
from ser.processes import worker_setup

logger = logging.getLogger(__name__)


@dataclass
class Decoded:
    """One manifest row as it comes back from a decoding worker: exactly one of item, result, error is set."""

    id: str
    seconds: float = 0.0
    """Duration of the decoded audio (0 for text and mocap rows)."""
    item: Item | None = None
    """The decoded item, for extraction in the main process."""
    result: Features | ItemRejected | None = None
    """Features computed in the worker (``in_workers`` extractors: the audio is not shipped back)."""
    error: str | None = None
    """Why the row could not be decoded."""


class BatchDataset(Dataset):
    """Decodes one planned batch per index (runs in DataLoader workers).

    With ``extractor`` set (extractors whose spec says ``in_workers``) the features are computed
    here too, and only the features and durations go back to the main process.
    """

    def __init__(
        self,
        manifest: Manifest,
        rows: Sequence[Utterance],
        batches: list[list[int]],
        extractor_modality: str,
        sample_rate: int | None,
        max_total_seconds: float,
        extractor: Extractor | None = None,
        seq_layers: Sequence[str] = (),
        plan: Plan | None = None,
    ) -> None:
        self.extractor = extractor
        self.plan = plan or {}
        self.seq_layers = tuple(seq_layers)
        self.root = str(manifest.root)
        self.paths = [str(manifest.audio_path(u)) if u.audio else None for u in rows]
        self.rows = rows
        self.batches = batches
        self.modality = extractor_modality
        self.sample_rate = sample_rate
        self.max_total_seconds = max_total_seconds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[Decoded]:
        decoded = [self._decode(row_index) for row_index in self.batches[index]]
        if self.extractor is None:
            return decoded
        ready = [entry for entry in decoded if entry.item is not None]
        items = [entry.item for entry in ready if entry.item is not None]
        results = extract_batch(self.extractor, items, self.seq_layers) if items else []
        for entry, result in zip(ready, results, strict=True):
            entry.result, entry.item = result, None
        return decoded

    def _decode(self, row_index: int) -> Decoded:
        row = self.rows[row_index]
        if self.modality != "audio":
            return Decoded(row.id, item=Item(id=row.id, text=row.text, extra={**row.extra, "root": self.root}))
        path = self.paths[row_index]
        if path is None:
            return Decoded(row.id, error="the manifest row has no audio")
        rate = self.sample_rate or 16000
        try:
            audio = load_audio(path, sample_rate=rate, start=row.start, end=row.end, max_seconds=self.max_total_seconds)
        except AudioError as err:
            return Decoded(row.id, error=str(err))
        except Exception as err:  # never let one row kill the run (a decoder bug, an OS error, ...)
            return Decoded(row.id, error=f"decoding failed: {type(err).__name__}: {err}")
        if row.id in self.plan:
            transforms, seed = self.plan[row.id]
            try:
                audio = apply_chain(transforms, audio, rate, seed)
            except Exception as err:  # a transform that fails on one clip rejects that row only
                return Decoded(row.id, error=f"augmentation failed: {type(err).__name__}: {err}")
        return Decoded(
            row.id,
            seconds=audio.size / rate,
            item=Item(id=row.id, audio=audio, text=row.text, extra={**row.extra, "root": self.root}),
        )


def extract_batch(extractor: Extractor, items: list[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
    """Run a batch; if it fails as a whole, retry item by item so one bad item cannot sink the rest.

    The retries run after the failed batch is let go: only the error's text is kept, so its traceback
    (whose frames hold the batch's tensors, on the GPU after an out-of-memory error) is freed before the
    cached memory is released and the first retry starts."""
    failure = _try_batch(extractor, items, seq_layers)
    if not isinstance(failure, str):
        return failure
    if len(items) == 1:
        return [ItemRejected(f"extraction failed: {failure}")]
    logger.warning("batch of %d failed (%s); retrying one by one", len(items), failure)
    free_cached_memory()
    return [result for item in items for result in extract_batch(extractor, [item], seq_layers)]


def _try_batch(
    extractor: Extractor, items: list[Item], seq_layers: Sequence[str]
) -> list[Features | ItemRejected] | str:
    """The batch's results, or the text of the error it failed with (the error itself is not kept)."""
    try:
        return extractor.extract(items, seq_layers)
    except (RuntimeError, ValueError, ExtractorError) as batch_error:
        traceback.clear_frames(batch_error.__traceback__)  # the failed forward's locals, even if a cycle holds it
        return f"{type(batch_error).__name__}: {batch_error}"


def batch_loader(dataset: BatchDataset, num_workers: int) -> DataLoader:
    """Batches of ``dataset`` in order, decoded by ``num_workers`` processes (0: in this process) that
    die with this one and leave Ctrl-C to it."""
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
        worker_init_fn=functools.partial(worker_setup, os.getpid()),
    )
