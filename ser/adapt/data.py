"""Waveform crops of a fold's utterances for adaptation, decoded in background workers.

Every item yields ``views`` fixed-length crops (1 for supervised training and validation, 2 for
contrastive), so batches never hold padding. Crops are drawn from a generator seeded by (seed,
epoch, item): the same config gives the same crops, whatever the number of workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ser.extract.audio import AudioError, load_audio

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One utterance to crop from."""

    id: str
    """The manifest row's id."""
    path: str
    """The audio file."""
    start: float | None
    """Start of the utterance in the file, in seconds (None: from the beginning)."""
    end: float | None
    """End of the utterance in the file, in seconds (None: to the end)."""
    label: int
    """Class index, or -1 when labels are not used (contrastive)."""


def fixed_length(audio: np.ndarray, samples: int, offset: int) -> np.ndarray:
    """(samples,) window of ``audio`` starting at ``offset``, tiling clips shorter than the window."""
    if len(audio) < samples:
        audio = np.tile(audio, -(-samples // len(audio)))
    offset = min(max(offset, 0), len(audio) - samples)
    return audio[offset : offset + samples]


class CropDataset(torch.utils.data.Dataset):
    """``dataset[i]`` -> ``((views, samples) float32 tensor, label)``, or None when the audio fails."""

    def __init__(
        self,
        clips: list[Clip],
        *,
        sample_rate: int,
        crop_seconds: float,
        views: int,
        seed: int,
        normalize: bool,
        random_crops: bool,
    ) -> None:
        self.clips, self.sample_rate, self.views, self.seed = clips, sample_rate, views, seed
        self.samples = max(1, round(crop_seconds * sample_rate))
        self.normalize, self.random_crops = normalize, random_crops
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        clip = self.clips[index]
        try:
            audio = load_audio(clip.path, sample_rate=self.sample_rate, start=clip.start, end=clip.end)
        except AudioError as err:
            logger.warning("%s: skipped in adaptation (%s)", clip.id, err)
            return None
        if self.normalize:  # as the extractor does: over the whole utterance, before cropping
            audio = ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)
        room = max(len(audio) - self.samples, 0)
        if self.random_crops:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            offsets = rng.integers(0, room + 1, size=self.views)
        else:
            offsets = np.full(self.views, room // 2)
        crops = np.stack([fixed_length(audio, self.samples, int(o)) for o in offsets])
        return torch.from_numpy(crops), clip.label


def collate(batch: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack the usable items: ``(B, views, samples)`` and ``(B,)`` labels (None if none is usable)."""
    usable = [item for item in batch if item is not None]
    if not usable:
        return None
    return torch.stack([crops for crops, _ in usable]), torch.tensor([label for _, label in usable])


def loader(
    dataset: CropDataset, *, batch_size: int, shuffle: bool, seed: int, num_workers: int, drop_last: bool = False
) -> torch.utils.data.DataLoader[Any]:
    generator = torch.Generator()
    generator.manual_seed(seed + 7919 * dataset.epoch)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        persistent_workers=False,
    )
