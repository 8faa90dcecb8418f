"""SER-Fuse (Pham et al., SOICT 2023; nhattruongpham/SER-Fuse): text [CLS] + speaker embedding, concatenation.

Text is the cached BERT [CLS] vector of ``last_hidden_state`` (B, 768; not the pooler). Audio is one
pooled vector per utterance: in the paper the 192-d ECAPA-TDNN speaker x-vector
(speechbrain/spkrec-ecapa-voxceleb); any pooled audio vector (B, Da) works here::

    [text (B, 768) || audio (B, 192)] = (B, 960) -> Dropout 0.2 -> Linear 256 -> Linear 64 -> Linear C

Deviations from the source repository:

* None in the head's default configuration (the ``ser`` recipe's input z-scoring is one, see below). The
  paper's head has no activation, so it is one linear map (flagged, kept); ``nonlinear=True`` adds a
  ReLU after each hidden linear layer (not in the paper).
* Checkpoint: the source saves only when the training AND validation losses both reach new minima in
  the same epoch: the ``paper`` recipe does too (``train.checkpoint=train_val_loss``); the ``ser`` recipe
  keeps the best validation UA.
* The original applies softmax only for argmax; this head returns logits, which is the same thing.
* ``inputs["speaker"]`` (an optional key of the head contract) is not used by this head.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["serfuse"].recipes`` in ``ser.fusion.heads`` (``ser fusion show serfuse``). Input scaling: the ``ser``
recipe z-scores the text and audio vectors with the fold's training statistics (``train.normalize``); the
source fed them raw, and so does the ``paper`` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

INPUTS = {"text": "pooled", "audio": "pooled"}
EXAMPLE_DIMS = {"text": 8, "audio": 6}


@dataclass(kw_only=True)
class SerFuseConfig:
    """Hyper-parameters of SER-Fuse (defaults: the paper's)."""

    hidden: tuple[int, ...] = (256, 64)
    """Widths of the hidden linear layers after the concatenation."""
    dropout: float = 0.2
    """Dropout on the concatenated vector (the only dropout in the model)."""
    nonlinear: bool = False
    """Add a ReLU after each hidden linear layer. The paper has none (its head is linear); off by
    default to match it."""


class SerFuseHead(nn.Module):
    """[text (B, Dt) || audio (B, Da)] -> logits (B, C); features = the last hidden layer."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: SerFuseConfig) -> None:
        super().__init__()
        if set(dims) != set(INPUTS):
            raise ValueError(f"the serfuse head needs exactly the modalities text and audio, got {sorted(dims)}")
        if not config.hidden:
            raise ValueError("serfuse needs at least one hidden layer (hidden=(256, 64) in the paper)")
        self.dropout = nn.Dropout(config.dropout)
        layers: list[nn.Module] = []
        width = dims["text"] + dims["audio"]  # 768 + 192 = 960 in the paper
        for hidden in config.hidden:  # 960 -> 256 -> 64
            layers.append(nn.Linear(width, hidden))
            if config.nonlinear:  # the paper: no activation (flagged: linear head)
                layers.append(nn.ReLU())
            width = hidden
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, n_classes)  # 64 -> C
        self.feature_dim = width

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fused = torch.cat([inputs["text"], inputs["audio"]], dim=-1)  # (B, 960), text first as the paper
        hidden = self.hidden(self.dropout(fused))  # (B, 64)
        return self.classifier(hidden), hidden  # (B, C), (B, 64)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = SerFuseConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> SerFuseHead:
    return SerFuseHead(dims, n_classes, SerFuseConfig(**overrides))
