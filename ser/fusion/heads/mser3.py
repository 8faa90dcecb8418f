"""3M-SER (Tran et al., INISCOM 2023; namphuongtran9196/3m-ser): token self-attention, then one
self-attention over the joint text + audio sequence, pooled at the text [CLS] position.

Text is the cached BERT ``last_hidden_state`` (B, T, 768) with lengths; audio is the cached VGGish
patch sequence (B, N, A) with lengths (A = 128). All attentions are ``nn.MultiheadAttention`` with
``heads`` heads and attention-weight dropout ``dropout``; none has a residual connection (as the paper)::

    audio (B, N, A)  -> audio_norm ----------------------------------------------+
                                                                                 |
    text  (B, T, Dt) -> self-attention -> Linear Dt->A -> LayerNorm -> (B, T, A) |
                                                                          |      |
                        concat along time [text ; audio] (B, T+N, A) <----+------+
                        -> self-attention -> Linear A->A -> LayerNorm
                        -> position 0 (the text [CLS]) (B, A)
                        -> Dropout -> Linear A->64 -> LeakyReLU(0.01) -> Linear 64->C

``audio_norm`` selects the paper's three model types: ``_3M_SERLayerNorm`` (``"layer_norm"``, LayerNorm(A)
per patch, the repository's default), ``_3M_SERMinMax`` (``"min_max"``) and ``_3M_SER`` (``"none"``).

Deviations from the source repository (each one is also noted where it happens):

* The original trains with batch size 1 and no masks. We batch: the text self-attention masks padded
  tokens, and the joint attention masks padded tokens AND padded patches (the joint sequence is
  ``[text tokens + text padding ; audio patches + audio padding]``, padding sits in the middle; there
  are no positional encodings, so where the padding sits does not matter once it is masked). Position 0
  is still the [CLS] token because text comes first. An item's logits do not depend on its batch.
* ``"min_max"``: the original takes one global min and max over the whole (1, N, A) tensor, i.e. over
  the one item. We take them per item over its VALID patches only (the faithful batched version), add a
  1e-8 floor to ``max - min`` (the original divides by zero on a constant input) and set padded patches
  to 0.
* The original can also return the two attention maps; the head only returns logits
  (``need_weights=False``).

Not in the head: the original keeps frozen BERT in train mode (dropout noise in the "frozen" features);
the cache removes it. The paper-era VGGish is postprocessed (quantised, gradient-free), so training on
cached VGGish is exact for the paper; v0.1.1 made VGGish trainable, which a cache cannot reproduce.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["mser3"].recipes`` in ``ser.fusion.heads`` (``ser fusion show mser3``). Input scaling: none
(``train.normalize`` only z-scores pooled vectors, never sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ser.fusion.blocks import AUDIO_NORMS, AudioNorm, SelfAttentionBlock, check_heads_divide, padding_mask

INPUTS = {"text": "seq", "audio": "seq"}
EXAMPLE_DIMS = {"text": 16, "audio": 16}


@dataclass(kw_only=True)
class Mser3Config:
    """Hyper-parameters of 3M-SER (defaults: the paper's)."""

    audio_norm: Literal["layer_norm", "min_max", "none"] = "layer_norm"
    """Normalisation of the audio patches before fusion: ``"layer_norm"`` (LayerNorm over the A features
    of each patch; the repository's default model type), ``"min_max"`` ((x - min) / (max - min) with one
    min and max per item over its valid patches and all features) or ``"none"``."""
    heads: int = 8
    """Attention heads of both attentions (the text width Dt and the audio width A must divide by it)."""
    dropout: float = 0.5
    """Dropout on the attention weights of both attentions and before the classifier (one knob in the
    original)."""
    hidden: int = 64
    """Width of the hidden layer of the classifier."""

    def __post_init__(self) -> None:
        if self.audio_norm not in AUDIO_NORMS:
            raise ValueError(f"audio_norm must be one of {', '.join(AUDIO_NORMS)}, got {self.audio_norm!r}")


class Mser3Head(nn.Module):
    """Text tokens (B, T, Dt) + audio patches (B, N, A), with lengths -> logits (B, C)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: Mser3Config) -> None:
        super().__init__()
        if set(dims) != set(INPUTS):
            raise ValueError(f"the mser3 head needs exactly the modalities text and audio, got {sorted(dims)}")
        check_heads_divide(dims, config.heads, "mser3")
        text_dim, audio_dim = dims["text"], dims["audio"]  # 768, 128 in the paper
        self.audio_norm = AudioNorm(config.audio_norm, audio_dim)
        self.text_block = SelfAttentionBlock(text_dim, audio_dim, config.heads, config.dropout)  # Dt -> A
        self.fusion_block = SelfAttentionBlock(audio_dim, audio_dim, config.heads, config.dropout)  # A -> A
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(audio_dim, config.hidden),  # A -> 64
            nn.LeakyReLU(0.01),
            nn.Linear(config.hidden, n_classes),  # 64 -> C
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        text, audio = inputs["text"], inputs["audio"]  # (B, T, Dt), (B, N, A)
        text_pad = padding_mask(inputs["text_lengths"], text.shape[1])  # (B, T), True at padding
        audio_pad = padding_mask(inputs["audio_lengths"], audio.shape[1])  # (B, N)

        audio = self.audio_norm(audio, audio_pad)  # (B, N, A)
        text = self.text_block(text, text_pad)  # (B, T, A)

        # Joint sequence; its padding mask is the two masks side by side (padding in the middle).
        fused = torch.cat([text, audio], dim=1)  # (B, T+N, A)
        fused_pad = torch.cat([text_pad, audio_pad], dim=1)  # (B, T+N)
        fused = self.fusion_block(fused, fused_pad)  # (B, T+N, A)

        pooled = fused[:, 0]  # (B, A): the text [CLS] position
        logits: torch.Tensor = self.classifier(pooled)  # (B, C)
        return logits


CONFIG = Mser3Config
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> Mser3Head:
    return Mser3Head(dims, n_classes, Mser3Config(**overrides))
