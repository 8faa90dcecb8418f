"""Baseline: pooled vectors of one or more modalities, concatenated, then an MLP.

Audio-only (``--audio``), text-only (``--text``) or both; the unimodal baselines of the seed
papers are this head with one modality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

INPUTS = {"audio": "pooled?", "text": "pooled?", "mocap": "pooled?"}
EXAMPLE_DIMS = {"audio": 12, "text": 8}


@dataclass(kw_only=True)
class MlpConfig:
    """Hyper-parameters of the MLP baseline."""

    hidden: tuple[int, ...] = (512,)
    """Widths of the hidden layers."""
    dropout: float = 0.5
    """Dropout before every linear layer."""


class MlpHead(nn.Module):
    """Concatenate the pooled inputs (in modality-name order) and classify: (B, sum D) -> (B, C)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: MlpConfig) -> None:
        super().__init__()
        if not dims:
            raise ValueError("the mlp head needs at least one modality (--audio, --text or --mocap)")
        self.modalities = sorted(dims)
        layers: list[nn.Module] = []
        width = sum(dims.values())
        for hidden in config.hidden:
            layers += [nn.Dropout(config.dropout), nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers += [nn.Dropout(config.dropout), nn.Linear(width, n_classes)]
        self.net = nn.Sequential(*layers)
        self.feature_dim = width

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(torch.cat([inputs[m] for m in self.modalities], dim=-1))


def build(dims: dict[str, int], n_classes: int, **overrides: object) -> MlpHead:
    return MlpHead(dims, n_classes, MlpConfig(**overrides))  # type: ignore[arg-type]
