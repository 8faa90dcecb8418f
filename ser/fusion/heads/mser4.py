"""4M-SER (Tran et al.; tpnam0901/4M-MER): 3M-SER generalised to any audio encoder, with a pooling
choice, a configurable classifier and the pooled fused feature exposed for feature losses.

Text is the cached BERT/RoBERTa ``last_hidden_state`` (B, T, 768); audio is a cached sequence (B, F, A):
VGGish patches (A = 128) or SSL frames (HuBERT / wav2vec 2.0 / WavLM base, A = 768). The fusion width is
A. No residual connections (as the paper)::

    audio (B, F, A)  -> audio_norm ----------------------------------------------+
                                                                                 |
    text  (B, T, Dt) -> self-attention -> Linear Dt->A -> LayerNorm -> (B, T, A) |
                                                                          |      |
                        concat along time [text ; audio] (B, T+F, A) <----+------+
                        -> self-attention -> Linear A->A -> LayerNorm
                        -> pooling: cls (position 0 = text [CLS]) | mean | max over valid positions
                        -> features (B, A)
                        -> Dropout -> [Linear d -> LeakyReLU(0.01)] for d in linear_layers -> Linear C

The audio normalisation, the attention block and the heads check are 3M-SER's, shared through
``ser.fusion.blocks`` (no head imports another head's module). ``forward_features`` returns the pooled
(B, A) vector, on which the original puts its center / contrastive-center / ArcFace / CosFace losses
(implemented elsewhere).

Deviations from the source repository (each one is also noted where it happens):

* Batch size 1 without masks in the original; we batch with key-padding masks in both attentions and
  pool over valid positions only, so an item's output does not depend on its batch (see ``mser3``).
* ``"min_max"`` per item over valid frames, with a 1e-8 floor on ``max - min`` (see ``mser3``).
* ``pooling="max"``: the original returns the ``(values, indices)`` tuple of ``Tensor.max(dim=1)`` and
  so crashes in the head; we take the values.
* The original also returns the text and audio branch outputs; the auxiliary losses only use the pooled
  feature, which ``forward_features`` returns.
Training is the recipes' business, not the head's: the ``paper`` recipe reproduces the original's
separate Adam for the loss parameters (``train.loss_optimizer``, x0.1 at epochs 8, 14, 20, 25), its SGD
with momentum 0.99 (the hidden default of the configs that set no ``optimizer_type``), its two stages
(``train.transfer_epochs``) and its loss forms; the ``ser`` recipe trains with Adam 1e-4 and
StepLR(30, 0.1) like the family's other heads.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["mser4"].recipes`` in ``ser.fusion.heads`` (``ser fusion show mser4``). Input scaling: none
(``train.normalize`` only z-scores pooled vectors, never sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ser.fusion.blocks import (
    AUDIO_NORMS,
    AudioNorm,
    SelfAttentionBlock,
    check_heads_divide,
    padding_mask,
    pool_unpadded,
)

INPUTS = {"text": "seq", "audio": "seq"}
EXAMPLE_DIMS = {"text": 16, "audio": 16}

POOLINGS = ("cls", "mean", "max")


@dataclass(kw_only=True)
class Mser4Config:
    """Hyper-parameters of 4M-SER (defaults: the repository's base config)."""

    audio_norm: Literal["layer_norm", "min_max", "none"] = "layer_norm"
    """Normalisation of the audio frames before fusion: ``"layer_norm"`` (LayerNorm(A) per frame),
    ``"min_max"`` (per item over its valid frames and all features) or ``"none"``."""
    pooling: Literal["cls", "mean", "max"] = "cls"
    """How the fused sequence becomes one vector: ``"cls"`` (position 0, the text [CLS] token), or the
    mean / max over the valid text and audio positions."""
    linear_layers: tuple[int, ...] = (64,)
    """Widths of the hidden classifier layers, each Linear -> LeakyReLU (the SSL configs use (128, 64))."""
    heads: int = 8
    """Attention heads of both attentions (the text width Dt and the audio width A must divide by it)."""
    dropout: float = 0.5
    """Dropout on the attention weights and before the classifier (one knob in the original)."""

    def __post_init__(self) -> None:
        if self.audio_norm not in AUDIO_NORMS:
            raise ValueError(f"audio_norm must be one of {', '.join(AUDIO_NORMS)}, got {self.audio_norm!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        self.linear_layers = tuple(int(width) for width in self.linear_layers)  # YAML gives lists


class Mser4Head(nn.Module):
    """Text tokens (B, T, Dt) + audio frames (B, F, A), with lengths -> logits (B, C); features (B, A)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: Mser4Config) -> None:
        super().__init__()
        if set(dims) != set(INPUTS):
            raise ValueError(f"the mser4 head needs exactly the modalities text and audio, got {sorted(dims)}")
        check_heads_divide(dims, config.heads, "mser4")
        text_dim, audio_dim = dims["text"], dims["audio"]  # 768, 128 (VGGish) or 768 (SSL)
        self.pooling = "first" if config.pooling == "cls" else config.pooling
        self.audio_norm = AudioNorm(config.audio_norm, audio_dim)
        self.text_block = SelfAttentionBlock(text_dim, audio_dim, config.heads, config.dropout)  # Dt -> A
        self.fusion_block = SelfAttentionBlock(audio_dim, audio_dim, config.heads, config.dropout)  # A -> A
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        width = audio_dim
        for hidden in config.linear_layers:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.01)]  # no dropout between them (as the original)
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        self.classifier = nn.Sequential(*layers)
        self.feature_dim = audio_dim

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        text, audio = inputs["text"], inputs["audio"]  # (B, T, Dt), (B, F, A)
        text_pad = padding_mask(inputs["text_lengths"], text.shape[1])  # (B, T), True at padding
        audio_pad = padding_mask(inputs["audio_lengths"], audio.shape[1])  # (B, F)

        audio = self.audio_norm(audio, audio_pad)  # (B, F, A)
        text = self.text_block(text, text_pad)  # (B, T, A)

        # Joint sequence; its padding mask is the two masks side by side (padding in the middle).
        fused = torch.cat([text, audio], dim=1)  # (B, T+F, A)
        fused_pad = torch.cat([text_pad, audio_pad], dim=1)  # (B, T+F)
        fused = self.fusion_block(fused, fused_pad)  # (B, T+F, A)

        features = pool_unpadded(fused, fused_pad, self.pooling)  # (B, A)
        return self.classifier(features), features  # (B, C), (B, A)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = Mser4Config
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> Mser4Head:
    return Mser4Head(dims, n_classes, Mser4Config(**overrides))
