"""Early fusion (Copenhagen SER project 2025, whitesungun876/ser_multimodal_project ``FusedTransformer``).

Pooled vectors (their setup: BERT [CLS] 768 and wav2vec2 frame-mean 768; any D here) become tokens of
width ``d_model``, a learnable CLS token is prepended, and a post-norm transformer encoder reads them;
the CLS output is normalised and classified::

    text (B, 768), audio (B, 768) -> tokens (B, M, 256), M = 2 ("per_modality") or 1 ("concat")
    -> [CLS (zeros init) ; tokens] (B, 1 + M, 256)
    -> TransformerEncoder: 4 layers, 4 heads, ff 1024, GELU, dropout 0.1, post-norm
    -> LayerNorm(CLS) (B, 256) -> Linear C

Deviations from the source repository:

* ``tokens="per_modality"`` (default): each modality has its own Linear D -> 256 and becomes one token,
  so attention runs between modalities. Their code concatenates [text || audio] = 1536, projects it
  with one Linear and feeds ONE token next to CLS, so the "attention" only mixes CLS with a single
  vector; ``tokens="concat"`` reproduces that exactly.
* No positional or modality embeddings (neither has the original). With ``per_modality`` each token
  comes from its own projection, so the encoder can still tell the modalities apart.
* Single-modality use (one of text/audio) is allowed; the original always had both.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["early_fusion"].recipes`` in ``ser.fusion.heads`` (``ser fusion show early_fusion``). Input scaling:
the ``ser`` recipe z-scores the text and audio vectors with the fold's training statistics
(``train.normalize``); the source fed them raw, and so does the ``paper`` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

INPUTS = {"audio": "pooled?", "text": "pooled?"}
EXAMPLE_DIMS = {"audio": 12, "text": 8}
ORDER = ("text", "audio")
"""Token (and, for "concat", concatenation) order: text first, as their [BERT CLS || w2v2 mean]."""


@dataclass(kw_only=True)
class EarlyFusionConfig:
    """Hyper-parameters of the early-fusion transformer (defaults: the original code's)."""

    tokens: Literal["per_modality", "concat"] = "per_modality"
    """``per_modality``: one token per modality, each with its own projection (deviation, see module
    doc). ``concat``: concatenate the modalities and project to one token (the original)."""
    d_model: int = 256
    """Token width."""
    n_layers: int = 4
    """Encoder layers."""
    n_heads: int = 4
    """Attention heads per layer."""
    ff_dim: int = 1024
    """Width of the feed-forward block of each layer."""
    dropout: float = 0.1
    """Dropout inside the encoder layers (attention weights, residual branches, feed-forward)."""


class EarlyFusionHead(nn.Module):
    """Pooled modality vectors -> CLS transformer -> logits (B, C); features = the normalised CLS (B, d)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: EarlyFusionConfig) -> None:
        super().__init__()
        unknown = sorted(set(dims) - set(ORDER))
        if unknown:
            raise ValueError(f"the early_fusion head takes text and audio, not {', '.join(unknown)}")
        self.modalities = [m for m in ORDER if m in dims]
        if not self.modalities:
            raise ValueError("the early_fusion head needs at least one modality (--text or --audio)")
        if config.tokens not in ("per_modality", "concat"):
            raise ValueError(f"tokens must be 'per_modality' or 'concat', got {config.tokens!r}")
        self.tokens = config.tokens
        d = config.d_model
        self.proj: nn.ModuleDict | nn.Linear
        if self.tokens == "per_modality":  # one Linear D_m -> 256 per modality
            self.proj = nn.ModuleDict({m: nn.Linear(dims[m], d) for m in self.modalities})
        else:  # the original: Linear 1536 -> 256 over the concatenation
            self.proj = nn.Linear(sum(dims[m] for m in self.modalities), d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))  # zeros init, as the original
        layer = nn.TransformerEncoderLayer(
            d,
            config.n_heads,
            dim_feedforward=config.ff_dim,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
        )
        # Note: nn.TransformerEncoder deep-copies ``layer``, so all layers start from the same weights
        # (the PyTorch behaviour the original inherits too).
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.classifier = nn.Linear(d, n_classes)
        self.n_tokens = 1 + (len(self.modalities) if self.tokens == "per_modality" else 1)
        self.feature_dim = d

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's input: (B, n_tokens, d) = CLS followed by the modality token(s)."""
        proj = self.proj
        if isinstance(proj, nn.ModuleDict):  # tokens == "per_modality"
            tokens = torch.stack([proj[m](inputs[m]) for m in self.modalities], dim=1)  # (B, M, 256)
        else:
            fused = torch.cat([inputs[m] for m in self.modalities], dim=-1)  # (B, 1536)
            tokens = self.proj(fused).unsqueeze(1)  # (B, 1, 256)
        cls = self.cls.expand(tokens.shape[0], -1, -1)  # (B, 1, 256)
        return torch.cat([cls, tokens], dim=1)  # (B, 1 + M, 256)

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(self.embed(inputs))  # (B, 1 + M, 256); no padding: every token is real
        cls = self.norm(x[:, 0])  # (B, 256)
        return self.classifier(cls), cls  # (B, C), (B, 256)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = EarlyFusionConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> EarlyFusionHead:
    return EarlyFusionHead(dims, n_classes, EarlyFusionConfig(**overrides))
