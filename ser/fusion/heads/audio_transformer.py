"""Transformer encoder on cached log-mel frames (Copenhagen SER project).

The source's training script imports ``AudioTransformer(n_mels=64, d_model=128, nhead=4,
num_layers=4)``, but the class exists nowhere in the project's history. This is our reconstruction
from those arguments:

* each frame (n_mels values) → Linear n_mels→128 → LayerNorm (our addition: raw log-mel values lie
  around -14…+5, which would swamp the unit-scale positions) → + sinusoidal positions;
* ``nn.TransformerEncoder``: 4 post-norm layers, d 128, 4 heads, feed-forward 512 (4·d, the usual
  ratio; not recorded), ReLU, dropout 0.1, with a key-padding mask over the batch padding;
* masked mean over the valid frames → Dropout → Linear C.

Padded frames are never attended to and never pooled, so in eval mode an item's logits do not
depend on the padding the batch adds (up to float rounding).

Deviation: SpecAugment widths count frames of the cache, so its time masks are about 3x shorter
than the source's 32 ms frames made them (``ser.fusion.augment`` gives the numbers and the fix).

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["audio_transformer"].recipes`` in ``ser.fusion.heads`` (``ser fusion show audio_transformer``). Input
scaling: none (``train.normalize`` only z-scores pooled vectors, never sequences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ser.fusion.augment import SpecAugment
from ser.fusion.blocks import masked_pool, padding_mask

INPUTS = {"audio": "seq"}
EXAMPLE_DIMS = {"audio": 64}


def sinusoidal_positions(n_positions: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(n_positions, dim) fixed encodings: sin at even and cos at odd features, wavelengths
    ``2π · 10000^(2i/dim)`` (Vaswani et al., 2017)."""
    position = torch.arange(n_positions, dtype=torch.float32, device=device)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: dim // 2])
    return table


@dataclass(kw_only=True)
class AudioTransformerConfig:
    """Hyper-parameters of the log-mel transformer head (source arguments; the class is missing)."""

    d_model: int = 128
    """Model width."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 4
    """Encoder layers."""
    ff_dim: int = 512
    """Feed-forward width (4 · d_model; not recorded in the source)."""
    dropout: float = 0.1
    """Dropout inside the encoder and before the output layer."""
    specaugment: bool = True
    """Apply SpecAugment (``ser.fusion.augment``, source parameters) to the frames in training mode."""


class AudioTransformerHead(nn.Module):
    """(B, T, n_mels) log-mel frames + (B,) lengths -> (B, C) logits."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: AudioTransformerConfig) -> None:
        super().__init__()
        if set(dims) != {"audio"}:
            raise ValueError(f"the audio_transformer head takes log-mel frames only (--audio), got {sorted(dims)}")
        self.config = config
        self.augment = SpecAugment() if config.specaugment else None
        self.embed = nn.Linear(dims["audio"], config.d_model)
        self.embed_norm = nn.LayerNorm(config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, config.ff_dim, config.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.d_model, n_classes)
        self.feature_dim = config.d_model

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        audio = inputs["audio"]
        n_frames = audio.shape[1]
        lengths = inputs["audio_lengths"].to(audio.device).long().clamp(min=0, max=n_frames)
        if self.augment is not None:
            audio = self.augment(audio, lengths)
        # At least one key per item, so an empty item cannot produce NaN attention rows.
        lengths = lengths.clamp(min=1)
        x = self.embed_norm(self.embed(audio)) + sinusoidal_positions(n_frames, self.config.d_model, audio.device)
        x = self.encoder(x, src_key_padding_mask=padding_mask(lengths, n_frames))
        features = masked_pool(x, lengths, "mean")
        return self.out(self.dropout(features)), features

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = AudioTransformerConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> AudioTransformerHead:
    return AudioTransformerHead(dims, n_classes, AudioTransformerConfig(**overrides))
