"""SpecAugment for padded log-mel batches (Copenhagen SER project).

The source applied one time mask of 10-30 frames and one frequency mask of 5-15 bins, each with
probability 0.5, and filled them with 0.0. Under its ``power_to_db(ref=max)`` scaling 0 dB is the
*loudest* value, so its masks injected maximum energy instead of silence. Here:

* the fill value is the item's own minimum over its valid frames (its silence floor: about -13.8 for
  the ``log(mel + 1e-6)`` preset, -80 dB for the ``librosa`` preset), never the maximum;
* masks are drawn inside each item's valid frames only; batch padding is never touched;
* masks are active only in training mode (``module.train()``); in eval the input is returned as is;
* all draws use torch's global RNG (on the CPU, whatever the input device), so ``torch.manual_seed``
  makes the masks reproducible.

A mask wider than the item (a very short utterance) is clipped to the item's length.

Deviation in time scale (widths are counted in frames of whatever cache feeds the head): the source's
mel frames were librosa's default hop of 512 samples at 16 kHz = 32 ms, so its 10-30-frame time mask
covered 320-960 ms; on the ``64`` log-mel preset (10 ms hop) the same 10-30 frames cover 100-300 ms.
``SpecAugment(time_width=(32, 96))`` gives the source's durations at 10 ms. Frequency widths (5-15 of
64 mel bins) are the same in both.
"""

from __future__ import annotations

import torch
from torch import nn

from ser.fusion.blocks import padding_mask


def _band_masks(lengths: torch.Tensor, size: int, width: tuple[int, int], p: float, n_masks: int) -> torch.Tensor:
    """(B,) valid extents -> (B, size) bool: ``n_masks`` bands, each present with probability ``p``,
    of a width drawn uniformly in ``width`` (inclusive, clipped to the extent), placed uniformly
    inside ``[0, extent)``. Draws happen on the CPU."""
    lo, hi = width
    extent = lengths.cpu().long()
    batch = extent.shape[0]
    positions = torch.arange(size)[None, :]
    mask = torch.zeros(batch, size, dtype=torch.bool)
    for _ in range(n_masks):
        present = torch.rand(batch) < p
        widths = torch.minimum(torch.randint(lo, hi + 1, (batch,)), extent)
        starts = (torch.rand(batch) * (extent - widths + 1).to(torch.float32)).long()
        starts = torch.minimum(starts, extent - widths).clamp(min=0)  # guards the rand() == 1.0 edge
        band = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
        mask = mask | (band & present[:, None])  # out of place: under vmap the bands are batched
    return mask


FILLS = ("min", "mean", "zero")


def _fill_value(x: torch.Tensor, valid: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, F) frames with (B, T) valid flags -> (B,) value masked bins get: the item's minimum over
    valid frames (its silence floor, for log-mel), its mean (for learned features) or 0."""
    if how == "zero":
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if how == "mean":
        total = x.masked_fill(~valid[:, :, None], 0.0).sum(dim=(1, 2))
        count = (valid.sum(dim=1) * x.shape[2]).clamp(min=1)
        return total / count
    floor = x.masked_fill(~valid[:, :, None], float("inf")).amin(dim=(1, 2))
    return torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))  # empty items


class SpecAugment(nn.Module):
    """Time and frequency masking of ``(B, T, F)`` log-mel frames with ``(B,)`` valid lengths."""

    def __init__(
        self,
        time_width: tuple[int, int] = (10, 30),
        freq_width: tuple[int, int] = (5, 15),
        p_time: float = 0.5,
        p_freq: float = 0.5,
        n_time_masks: int = 1,
        n_freq_masks: int = 1,
        fill: str = "min",
    ) -> None:
        super().__init__()
        if fill not in FILLS:
            raise ValueError(f"SpecAugment fill must be one of {', '.join(FILLS)}, not {fill!r}")
        self.fill = fill
        for name, (lo, hi) in (("time_width", time_width), ("freq_width", freq_width)):
            if not 0 <= lo <= hi:
                raise ValueError(f"SpecAugment {name} must be (lo, hi) with 0 <= lo <= hi, not {(lo, hi)}")
        for name, p in (("p_time", p_time), ("p_freq", p_freq)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"SpecAugment {name} must lie in [0, 1], not {p}")
        self.time_width = time_width
        self.freq_width = freq_width
        self.p_time = p_time
        self.p_freq = p_freq
        self.n_time_masks = n_time_masks
        self.n_freq_masks = n_freq_masks

    def sample_masks(self, lengths: torch.Tensor, n_frames: int, n_freq: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the masks for one batch: (B, T) time mask (never beyond ``lengths``) and (B, F)
        frequency mask, both bool on the CPU."""
        time_mask = _band_masks(lengths.clamp(max=n_frames), n_frames, self.time_width, self.p_time, self.n_time_masks)
        freq_extent = torch.full_like(lengths.cpu().long(), n_freq)
        freq_mask = _band_masks(freq_extent, n_freq, self.freq_width, self.p_freq, self.n_freq_masks)
        return time_mask, freq_mask

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, F) frames, (B,) lengths -> masked copy in training mode, ``x`` itself in eval."""
        if not self.training:
            return x
        _batch, n_frames, n_freq = x.shape
        time_mask, freq_mask = self.sample_masks(lengths, n_frames, n_freq)
        time_mask, freq_mask = time_mask.to(x.device), freq_mask.to(x.device)
        valid = ~padding_mask(lengths.to(x.device), n_frames)  # (B, T)
        floor = _fill_value(x.detach(), valid, self.fill)  # (B,), padding excluded, no gradient
        masked = (time_mask[:, :, None] | freq_mask[:, None, :]) & valid[:, :, None]
        return torch.where(masked, floor[:, None, None].to(x.dtype), x)
