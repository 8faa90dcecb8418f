"""MemoCMT (Tran et al., Scientific Reports 2025; tpnam0901/MemoCMT): two cross-attentions, concatenated
along time and pooled (min by default), then a small MLP.

Text is the cached BERT ``last_hidden_state`` (B, T, 768); audio is the cached final-layer HuBERT base
frames (B, F, 768), both with lengths. D = ``fusion_dim``; all attentions have ``heads`` heads and
attention-weight dropout ``dropout``; no residual connections (as the paper)::

    text-side:  audio (B, F, Da) queries text (B, T, Dt)
                -> cross-attention -> Linear->D -> LayerNorm -> Dropout            (B, F, D)
    audio-side: text (B, T, Dt) queries audio (B, F, Da)
                -> cross-attention -> Linear->D -> LayerNorm -> Dropout            (B, T, D)
    concat along time [text-side ; audio-side] -> Dropout                          (B, F+T, D)
    -> pooling over valid positions: min | mean | max | first -> features          (B, D)
    -> Dropout -> [Linear d -> LeakyReLU(0.01)] for d in linear_layers -> Dropout -> Linear C

The block whose keys are the text is the "text-side" block (the original's ``text_attention``); its
outputs sit at the AUDIO query positions, so they are valid where the audio frames are valid, and the
audio-side block's outputs are valid where the text tokens are valid. The pooling over such a mask
(padding in the middle) is ``ser.fusion.blocks.pool_unpadded``, shared with 4M-SER.

Deviations from the source repository (each one is also noted where it happens):

* Batch size 1 without masks in the original. We batch: each cross-attention masks the padded keys,
  and pooling only counts positions whose QUERY was valid (the concatenation has padding in the middle,
  hence a mask-based pooling), so an item's output does not depend on its batch.
* ``pooling`` defaults to ``"min"``, the paper's best aggregation; the repository's config default is
  ``"cls"``, which is position 0, i.e. the first AUDIO-query position (not a [CLS] token): ``"first"``
  here. Note that ``"first"`` reads one text-side output only, so the whole audio-side block (text
  queries over audio) is off the output's path and gets no gradient: under the repository's default the
  "cross-modal" head is audio-queries-over-text alone. (The repository's ``"max"`` takes the values of
  ``Tensor.max``, as ours does; 4M-SER's, which returned the (values, indices) tuple, is a different file.)
* The original constructs ``fusion_attention``, ``fusion_linear`` and ``fusion_layer_norm`` but never
  uses them (dead parameters); we do not build them, so the parameter count and the random-number
  stream at initialisation differ from the original's.
* The original needs Da == Dt (each attention is built with one encoder's width but gets its query
  or its keys from the other). When Da != Dt (e.g. VGGish audio, 128) we first project both inputs to
  D with a Linear each; with equal widths (the paper: 768 / 768) there is no projection and the layers
  are the original's.
* The original also returns the two branch outputs and can return the attention maps; we return logits
  (``forward``) or logits and the pooled features (``forward_features``).

Not in the head: the original reads int16 audio without dividing by 32768 and keeps the frozen
encoders in train mode (dropout noise); both are the cache's business.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["memocmt"].recipes`` in ``ser.fusion.heads`` (``ser fusion show memocmt``). Input scaling: none
(``train.normalize`` only z-scores pooled vectors, never sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ser.fusion.blocks import padding_mask, pool_unpadded

INPUTS = {"text": "seq", "audio": "seq"}
EXAMPLE_DIMS = {"text": 16, "audio": 16}

POOLINGS = ("min", "mean", "max", "first")


@dataclass(kw_only=True)
class MemoCmtConfig:
    """Hyper-parameters of MemoCMT (defaults: the paper's, with its best aggregation)."""

    fusion_dim: int = 768
    """Width D of the two cross-attention outputs after their Linear, and of the pooled features."""
    heads: int = 8
    """Attention heads of both cross-attentions (their width must divide by it)."""
    dropout: float = 0.05
    """Dropout on the attention weights, after each block, after the concatenation and in the classifier
    (one knob in the original)."""
    pooling: Literal["min", "mean", "max", "first"] = "min"
    """Aggregation over the valid positions of the concatenated sequence. ``"min"`` is the paper's best;
    the repository's config default ``"cls"`` is ``"first"`` (the first audio-query position; it leaves the
    audio-side block, whose outputs sit at the text positions, without gradient)."""
    linear_layers: tuple[int, ...] = (128,)
    """Widths of the hidden classifier layers, each Linear -> LeakyReLU."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        self.linear_layers = tuple(int(width) for width in self.linear_layers)  # YAML gives lists


class MemoCmtHead(nn.Module):
    """Text tokens (B, T, Dt) + audio frames (B, F, Da), with lengths -> logits (B, C); features (B, D)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: MemoCmtConfig) -> None:
        super().__init__()
        if set(dims) != set(INPUTS):
            raise ValueError(f"the memocmt head needs exactly the modalities text and audio, got {sorted(dims)}")
        text_dim, audio_dim, fusion_dim = dims["text"], dims["audio"], config.fusion_dim  # 768, 768, 768
        # Deviation (only when the widths differ; the original requires them equal): project both to D.
        if text_dim == audio_dim:
            width = text_dim
            self.text_in: nn.Module = nn.Identity()
            self.audio_in: nn.Module = nn.Identity()
        else:
            width = fusion_dim
            self.text_in = nn.Linear(text_dim, fusion_dim)
            self.audio_in = nn.Linear(audio_dim, fusion_dim)
        if width % config.heads:
            raise ValueError(
                f"the memocmt cross-attentions have width {width}, which {config.heads} attention "
                "heads do not divide; pass heads=<a divisor of it>"
                + ("" if text_dim == audio_dim else " or another fusion_dim")
            )
        self.pooling = config.pooling

        # Text-side block: audio frames query the text tokens.
        self.text_attention = nn.MultiheadAttention(width, config.heads, dropout=config.dropout, batch_first=True)
        self.text_linear = nn.Linear(width, fusion_dim)
        self.text_norm = nn.LayerNorm(fusion_dim)
        # Audio-side block: text tokens query the audio frames.
        self.audio_attention = nn.MultiheadAttention(width, config.heads, dropout=config.dropout, batch_first=True)
        self.audio_linear = nn.Linear(width, fusion_dim)
        self.audio_norm = nn.LayerNorm(fusion_dim)
        # The original's unused fusion_attention / fusion_linear / fusion_layer_norm are not built.
        self.dropout = nn.Dropout(config.dropout)

        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        previous = fusion_dim
        for hidden in config.linear_layers:
            layers += [nn.Linear(previous, hidden), nn.LeakyReLU(0.01)]  # no dropout between them (as the original)
            previous = hidden
        layers += [nn.Dropout(config.dropout), nn.Linear(previous, n_classes)]
        self.classifier = nn.Sequential(*layers)
        self.feature_dim = fusion_dim

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        text, audio = inputs["text"], inputs["audio"]  # (B, T, Dt), (B, F, Da)
        text_pad = padding_mask(inputs["text_lengths"], text.shape[1])  # (B, T), True at padding
        audio_pad = padding_mask(inputs["audio_lengths"], audio.shape[1])  # (B, F)
        text, audio = self.text_in(text), self.audio_in(audio)  # (B, T, W), (B, F, W); W = Dt = Da, or D

        # Text-side: query = audio frames, key = value = text tokens (padded tokens masked).
        text_side, _ = self.text_attention(
            audio, text, text, key_padding_mask=text_pad, need_weights=False
        )  # (B, F, W)
        text_side = self.dropout(self.text_norm(self.text_linear(text_side)))  # (B, F, D)
        # Audio-side: query = text tokens, key = value = audio frames (padded frames masked).
        audio_side, _ = self.audio_attention(
            text, audio, audio, key_padding_mask=audio_pad, need_weights=False
        )  # (B, T, W)
        audio_side = self.dropout(self.audio_norm(self.audio_linear(audio_side)))  # (B, T, D)

        # Concatenate along time; a position is valid where its QUERY was valid (padding in the middle).
        fused = self.dropout(torch.cat([text_side, audio_side], dim=1))  # (B, F+T, D)
        fused_pad = torch.cat([audio_pad, text_pad], dim=1)  # (B, F+T)

        features = pool_unpadded(fused, fused_pad, self.pooling)  # (B, D); "first" = first audio query
        return self.classifier(features), features  # (B, C), (B, D)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = MemoCmtConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> MemoCmtHead:
    return MemoCmtHead(dims, n_classes, MemoCmtConfig(**overrides))
