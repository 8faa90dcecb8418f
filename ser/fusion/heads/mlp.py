"""Baseline: pooled vectors of one or more modalities, concatenated, then an MLP::

    [audio ‖ mocap ‖ text] (B, sum D)   (modality-name order)
    -> Dropout(input_dropout) -> Linear 512 -> ReLU -> Dropout(dropout) -> Linear C

Audio-only (``--audio``), text-only (``--text``) or both; the unimodal baselines of the seed
papers are this head with one modality. The default layout is the Copenhagen project's
``train_model.py`` "mlp" (input -> Linear 512 -> ReLU -> Dropout 0.5 -> Linear C).

Deviations (ours, not in any source):

* Dropout on the INPUT features (``input_dropout``, default: the same 0.5 as ``dropout``); the source
  has none before its first Linear. ``head.input_dropout=0`` gives the source's layout exactly.
* The trainer z-scores the pooled inputs with the fold's training statistics (``train.normalize``,
  on by default; the source fed raw flattened log-mel + BERT vectors). ``train.normalize=false``
  turns it off.

Training: no paper, so only the ``ser`` recipe (``HEADS["mlp"]`` in ``ser.fusion.heads``: the TrainConfig
defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """Dropout before every hidden-to-next linear layer (after each ReLU)."""
    input_dropout: float | None = None
    """Dropout on the concatenated input features, before the first linear layer (not in the source:
    see the module docstring); None = the same as ``dropout``, 0 = none."""


class MlpHead(nn.Module):
    """Concatenate the pooled inputs (in modality-name order) and classify: (B, sum D) -> (B, C)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: MlpConfig) -> None:
        super().__init__()
        if not dims:
            raise ValueError("the mlp head needs at least one modality (--audio, --text or --mocap)")
        self.modalities = sorted(dims)
        layers: list[nn.Module] = []
        width = sum(dims.values())
        rate = config.dropout if config.input_dropout is None else config.input_dropout
        for hidden in config.hidden:
            layers += [nn.Dropout(rate), nn.Linear(width, hidden), nn.ReLU()]
            width, rate = hidden, config.dropout
        layers += [nn.Dropout(rate), nn.Linear(width, n_classes)]
        self.net = nn.Sequential(*layers)
        self.feature_dim = width

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = self.net(torch.cat([inputs[m] for m in self.modalities], dim=-1))  # (B, C)
        return logits


CONFIG = MlpConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> MlpHead:
    return MlpHead(dims, n_classes, MlpConfig(**overrides))
