"""SERVER (Pham et al., ICIIT 2023; nhattruongpham/mmser): BERT pooler + summed VGGish, linear head.

Text is the cached BERT pooler output (B, 768). Audio is the cached postprocessed VGGish output, one
128-d vector (quantised to 0..255) per 0.96 s patch, as a zero-padded sequence (B, N, 128) plus
lengths; the head sums it over the valid patches, as the paper does::

    text  (B, 768)    -> Linear 128 --+
                                      +-> concat (B, 256) -> Dropout 0.5 -> Linear 64 -> Linear C
    audio (B, N, 128) -> sum over N --+

Deviations from the source repository (each one is also noted where it happens):

* The original trains with batch size 1, so it never pads. We batch, and padded patches are masked
  out of the sum (a zero row would add nothing to a sum anyway, but the mask also keeps ``"mean"``
  exact and does not trust the padding value).
* The original drops utterances of at most one patch in its data preparation; the head accepts any
  N (an empty sum is the zero vector), the data side decides what to drop.
* Options that are off by default (default = paper): ``nonlinear`` (ReLU after the hidden linear
  layers) and ``audio_norm="mean"`` (mean instead of sum over patches).

What a cache changes: BERT is frozen in the original and VGGish's 8-bit ``round`` blocks its gradient,
so the original's "trainable" VGGish never changed and its cached patches are what the head saw. But the
original never put BERT in eval mode, so its pooler outputs carried dropout noise that differed every
epoch; the cache holds the noise-free outputs (encoders run in eval mode here), which no recipe can undo.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["server"].recipes`` in ``ser.fusion.heads`` (``ser fusion show server``). Input scaling: the ``ser``
recipe z-scores the text pooler vector with the fold's training statistics (``train.normalize``); the source
fed it raw, and so does the ``paper`` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ser.fusion.blocks import masked_pool, padding_mask

INPUTS = {"text": "pooled", "audio": "seq"}
EXAMPLE_DIMS = {"text": 8, "audio": 6}


@dataclass(kw_only=True)
class ServerConfig:
    """Hyper-parameters of SERVER (defaults: the paper's)."""

    text_dim: int = 128
    """Width of the text projection (768 -> 128 in the paper, matching VGGish's 128)."""
    hidden: int = 64
    """Width of the hidden linear layer after the concatenation."""
    dropout: float = 0.5
    """Dropout on the concatenated vector."""
    nonlinear: bool = False
    """Add a ReLU after the text projection and after the hidden layer. The paper has none, so its head
    is one linear map (text Linear and the two fused Linears compose); off by default to match it."""
    audio_norm: Literal["none", "mean"] = "none"
    """``"none"``: sum over the valid patches, as the paper (the vector grows with duration: a 10 s
    utterance sums about 10 patches of 0..255 values, so the audio half's scale is duration-dependent).
    ``"mean"``: divide by the number of patches (not in the paper)."""


class ServerHead(nn.Module):
    """Text pooler (B, Dt) + VGGish patch sequence (B, N, Da) -> logits (B, C); features = the hidden layer."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: ServerConfig) -> None:
        super().__init__()
        if set(dims) != set(INPUTS):
            raise ValueError(f"the server head needs exactly the modalities text and audio, got {sorted(dims)}")
        if config.audio_norm not in ("none", "mean"):
            raise ValueError(f"audio_norm must be 'none' or 'mean', got {config.audio_norm!r}")
        self.audio_norm = config.audio_norm
        self.text_proj = nn.Linear(dims["text"], config.text_dim)  # 768 -> 128
        self.dropout = nn.Dropout(config.dropout)
        self.hidden = nn.Linear(config.text_dim + dims["audio"], config.hidden)  # 256 -> 64
        self.classifier = nn.Linear(config.hidden, n_classes)  # 64 -> C
        # The paper: no activation anywhere (flagged: the whole head is linear); ReLU only if asked for.
        self.act = nn.ReLU() if config.nonlinear else nn.Identity()
        self.feature_dim = config.hidden

    def pool_audio(self, audio: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, N, Da) patches -> (B, Da): sum (paper) or mean over the valid patches only."""
        if self.audio_norm == "mean":
            return masked_pool(audio, lengths, "mean")
        if lengths is None:
            return audio.sum(dim=1)
        pad = padding_mask(lengths, audio.shape[1]).unsqueeze(-1)  # (B, N, 1), True at padding
        return audio.masked_fill(pad, 0.0).sum(dim=1)

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.act(self.text_proj(inputs["text"]))  # (B, 128)
        audio = self.pool_audio(inputs["audio"], inputs.get("audio_lengths"))  # (B, 128)
        fused = torch.cat([text, audio], dim=-1)  # (B, 256)
        hidden = self.act(self.hidden(self.dropout(fused)))  # (B, 64)
        return self.classifier(hidden), hidden  # (B, C), (B, 64)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = ServerConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> ServerHead:
    return ServerHead(dims, n_classes, ServerConfig(**overrides))
