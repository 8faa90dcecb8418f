"""Cross-attention between log-mel patches and a text vector (Copenhagen SER project).

Deviations: the whole model is a reconstruction. The source's ``xfmr`` model class (imported as
``ImprovedFusedTransformer``) exists nowhere in the project's history; what survives are its
arguments (audio_dim = 64·T, text_dim 768, patch_size 256, d_model 256, 4 heads, 2 layers, dropout
0.1) and a batch-preparation step that trims T to a multiple of 4 (= 256 / 64). Built from them:

* audio tokens: consecutive patches of ``patch_frames`` = 4 frames × 64 mels (256 values); each item
  is trimmed to ``length // 4`` whole patches → Linear 256→256 → LayerNorm (our addition: raw
  log-mel values lie around -14…+5) → + a learned positional embedding (``max_patches`` = 512
  patches = 20.48 s at the ``64`` preset's 100 frames/s; longer items keep their first 512 patches);
* text token: the pooled text vector (BERT [CLS] in the source, 768) → Linear Dt→256, one token;
* 2 post-norm layers, each: multi-head attention with the audio patches as queries and
  [text token ‖ audio patches] as keys/values (a cross-attention over one text key alone would be
  degenerate: softmax over a single key is constant, so every patch would receive the same
  vector), a key-padding mask over padded patches (the text key is never masked), residual +
  LayerNorm, then a ReLU feed-forward (1024 = 4·d, not recorded) with residual + LayerNorm; the
  text token is the same projected vector in every layer;
* masked mean over the valid patches → Dropout → Linear C.

Padded patches are never attended to and never pooled, so in eval mode an item's logits do not
depend on the padding the batch adds (up to float rounding).

SpecAugment widths are in frames of the cache (``ser.fusion.augment``): 10-30 time frames are
100-300 ms at the ``64`` log-mel preset's 10 ms hop, where the source's 10-30 frames were 320-960 ms
at librosa's default hop of 512 samples (32 ms); the frequency widths (5-15 of 64 mel bins) match.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["xattn_patch"].recipes`` in ``ser.fusion.heads`` (``ser fusion show xattn_patch``). Input scaling: the
``ser`` recipe z-scores the text vector (the log-mel frames are a sequence) with the fold's training
statistics (``train.normalize``); the source fed it raw, and so does the ``paper`` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ser.fusion.augment import SpecAugment
from ser.fusion.blocks import masked_pool, padding_mask

INPUTS = {"audio": "seq", "text": "pooled"}
EXAMPLE_DIMS = {"audio": 64, "text": 16}


@dataclass(kw_only=True)
class XattnPatchConfig:
    """Hyper-parameters of the patch cross-attention head (source arguments; the class is missing)."""

    patch_frames: int = 4
    """Frames per audio patch (4 × 64 mels = the source's patch_size 256)."""
    d_model: int = 256
    """Model width."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 2
    """Cross-attention layers."""
    ff_dim: int = 1024
    """Feed-forward width (4 · d_model; not recorded in the source)."""
    dropout: float = 0.1
    """Dropout inside the layers and before the output layer."""
    max_patches: int = 512
    """Length of the learned positional table; longer items keep their first ``max_patches`` patches."""
    specaugment: bool = True
    """Apply SpecAugment (``ser.fusion.augment``, source parameters) to the frames in training mode."""


class _CrossLayer(nn.Module):
    """Audio queries over [text ‖ audio] keys/values, then feed-forward; post-norm."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, audio: torch.Tensor, text: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """audio (B, P, d), text (B, 1, d), pad (B, P) True at padded patches -> (B, P, d)."""
        memory = torch.cat([text, audio], dim=1)
        memory_pad = torch.cat([pad.new_zeros(pad.shape[0], 1), pad], dim=1)  # the text key is never masked
        attended, _ = self.attn(audio, memory, memory, key_padding_mask=memory_pad, need_weights=False)
        audio = self.norm1(audio + self.drop1(attended))
        out: torch.Tensor = self.norm2(audio + self.drop2(self.ff(audio)))  # (B, P, d)
        return out


class XattnPatchHead(nn.Module):
    """(B, T, n_mels) log-mel frames + (B,) lengths and (B, Dt) text -> (B, C) logits."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: XattnPatchConfig) -> None:
        super().__init__()
        if set(dims) != {"audio", "text"}:
            raise ValueError(
                f"the xattn_patch head takes log-mel frames and a pooled text vector (--audio --text), "
                f"got {sorted(dims)}"
            )
        if config.patch_frames < 1 or config.max_patches < 1:
            raise ValueError("xattn_patch: patch_frames and max_patches must be >= 1")
        self.config = config
        self.augment = SpecAugment() if config.specaugment else None
        self.patch_embed = nn.Linear(config.patch_frames * dims["audio"], config.d_model)
        self.patch_norm = nn.LayerNorm(config.d_model)
        self.positions = nn.Parameter(torch.empty(config.max_patches, config.d_model))
        nn.init.normal_(self.positions, std=0.02)
        self.text_embed = nn.Linear(dims["text"], config.d_model)
        self.layers = nn.ModuleList(
            _CrossLayer(config.d_model, config.n_heads, config.ff_dim, config.dropout) for _ in range(config.n_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.d_model, n_classes)
        self.feature_dim = config.d_model

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        audio = inputs["audio"]
        batch, n_frames, n_mels = audio.shape
        lengths = inputs["audio_lengths"].to(audio.device).long().clamp(min=0, max=n_frames)
        if self.augment is not None:
            audio = self.augment(audio, lengths)
        size = self.config.patch_frames
        if n_frames < size:  # keep one (fully padded) patch so attention shapes stay non-empty
            audio = nn.functional.pad(audio, (0, 0, 0, size - n_frames))
        n_patches = min(max(n_frames // size, 1), self.config.max_patches)
        patch_lengths = (lengths // size).clamp(max=n_patches)
        patches = audio[:, : n_patches * size].reshape(batch, n_patches, size * n_mels)
        x = self.patch_norm(self.patch_embed(patches)) + self.positions[:n_patches]
        text = self.text_embed(inputs["text"]).unsqueeze(1)
        pad = padding_mask(patch_lengths, n_patches)
        for layer in self.layers:
            x = layer(x, text, pad)
        features = masked_pool(x, patch_lengths, "mean")  # an item shorter than one patch pools to 0
        return self.out(self.dropout(features)), features

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = XattnPatchConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> XattnPatchHead:
    return XattnPatchHead(dims, n_classes, XattnPatchConfig(**overrides))
