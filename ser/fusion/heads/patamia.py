"""Patamia et al. (PRML 2021; arXiv 2312.01568): text, speech and motion-capture branches, concatenated.

Follows the 2023 model (Ruddy202/multimodal-SEmoR) by default; the 2021 one (Ruddy202/
TRANSFORMER_BASED-Emotion-Recognition) is a configuration away (see the config docstrings). Each
branch maps its modality to a ``branch_dim`` vector; the branches present are concatenated::

    text  (B, 768)       -> Dropout 0.5 -> Linear 128 -> ReLU -> Dropout 0.5       --+
    audio (B, 768)       -> Linear 128                                             --+-> concat (B, 384)
    mocap (B, 200, 189)  -> Conv2D 16/32/64/75 (3x3, stride 2, ReLU) -> Flatten      |   -> Linear 128 -> ReLU
                         -> Linear 128                                             --+   -> Linear C

Any two or all three modalities: the pairwise models of the papers are the subsets (text + audio,
text + mocap, audio + mocap); fewer than two is a ``ValueError``.

Deviations from the source repositories (each one is also noted where it happens):

* Logits, no softmax. Both originals end in ``Dense(4, softmax)``. The 2021 code trains it with
  ``SparseCategoricalCrossentropy(from_logits=True)``, i.e. a softmax applied twice (a bug we do not
  reproduce); the 2023 code's ``sparse_categorical_crossentropy`` reads the softmax output as
  probabilities, which is one softmax, the same as our cross-entropy on logits.
* Speech: the 2023 model fine-tunes wav2vec2-base end to end and flattens its 768 frames x 768 into a
  589,824-d vector before Dense 128. We take the cached pooled vector (B, D) instead (two-stage; a
  590k-wide linear layer over frozen frames would be 75M parameters over a fixed padding layout). The
  2021 model's hand-crafted 100x34 speech features and its GRU/attention speech branch are not offered.
* Text: BERT is fine-tuned in both papers; here it is the cached (frozen) [CLS] vector.
* Mocap: the 2021 GRU/self-attention variant A is not offered; the Conv2D variant B is (see config).
* 2021 variants NOT offered (the 2023 model and the 2021 Conv2D-mocap concatenation model are):
  the 2021 speech input (34 pyAudioAnalysis short-term features x 100 frames) and both of its speech
  branches (text + speech: flattened 3400 -> Dense 512 -> 256 -> 256 -> 256; speech + mocap:
  GRU(128) -> SeqSelfAttention -> GRU(128) -> attention -> GRU(128) -> Dense 256, with its post-concat
  ReLU -> Dense 256 -> ReLU), the mocap GRU/attention variant A (GRU 512 -> attention -> GRU 256 ->
  attention -> GRU 128 -> Dense 256), the GloVe text models, and the attention regularisers (L2 1e-4
  kernel, L1 1e-4 bias). The 2021 text branch (Dense 256 tanh), branch width 256 and fused width 256
  are a configuration away (``text_activation="tanh"``, ``branch_dim=256``, ``fusion_hidden=256``).
  The grid is taken as a sequence with lengths: frames past an item's length are zeroed and the time
  axis is padded to ``mocap_frames`` (200), so the conv input never depends on the batch's padding.
  The original grid is always exactly 200 frames (``array_split`` into 200 chunks), so on that cache
  this changes nothing.
* 'same' padding with stride 2: Keras pads asymmetrically (the extra row/column at the end) for even
  sizes; we pad 1 on every side, which gives the same output size ceil(n / 2). No weights are ported,
  so only the sizes matter.

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["patamia"].recipes`` in ``ser.fusion.heads`` (``ser fusion show patamia``). Input scaling: the ``ser``
recipe z-scores the text and speech vectors (the mocap grid is a sequence) with the fold's training statistics
(``train.normalize``); the source fed them raw, and so does the ``paper`` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from ser.fusion.blocks import padding_mask

INPUTS = {"text": "pooled?", "audio": "pooled?", "mocap": "seq?"}
EXAMPLE_DIMS = {"text": 8, "audio": 6, "mocap": 5}
ORDER = ("text", "audio", "mocap")
"""Concatenation order of the branches present."""
ACTIVATIONS = ("none", "relu", "tanh")


@dataclass(kw_only=True)
class PatamiaConfig:
    """Hyper-parameters of the Patamia model (defaults: the 2023 paper's)."""

    branch_dim: int = 128
    """Output width of every branch (2021: 256)."""
    text_dropout: float = 0.5
    """Dropout before and after the text branch's linear layer (both papers)."""
    text_activation: str = "relu"
    """Activation of the text branch: ``none``, ``relu`` or ``tanh`` (2021: ``tanh``)."""
    audio_activation: str = "none"
    """Activation of the speech branch's linear layer (``none`` in both papers)."""
    mocap_channels: tuple[int, ...] = (16, 32, 64, 75)
    """Channels of the Conv2D stack, each 3x3 stride 2 'same' + ReLU (2021 variant B:
    (32, 64, 64, 128, 128))."""
    mocap_dropout: float = 0.0
    """Dropout after each conv layer (2021: 0.2; 2023: none)."""
    mocap_activation: str = "none"
    """Activation of the mocap branch's linear layer after the flatten (``none`` in both papers)."""
    mocap_frames: int = 200
    """Time axis of the conv input: shorter grids are zero-padded to it, longer ones are an error
    (the cache stores 200 frames x 189 channels per utterance)."""
    fusion_hidden: int = 128
    """Width of the fused ReLU layer before the classifier (2021: 256)."""


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    return {"none": nn.Identity(), "relu": nn.ReLU(), "tanh": nn.Tanh()}[name]


class MocapBranch(nn.Module):
    """(B, T, Dm) mocap grid + lengths -> (B, branch_dim): Conv2D stack over the (frames x channels) image."""

    def __init__(self, n_channels: int, config: PatamiaConfig) -> None:
        super().__init__()
        self.frames = config.mocap_frames
        layers: list[nn.Module] = []
        in_ch, height, width = 1, config.mocap_frames, n_channels
        for out_ch in config.mocap_channels:
            # 3x3 stride 2 with padding 1: out = ceil(n / 2), the size Keras 'same' gives (see module doc).
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            if config.mocap_dropout > 0:
                layers.append(nn.Dropout(config.mocap_dropout))
            in_ch, height, width = out_ch, (height + 1) // 2, (width + 1) // 2
        self.convs = nn.Sequential(*layers)
        # 2023 defaults with 200 x 189: 75 x 13 x 12 = 11,700 -> 128.
        self.proj = nn.Linear(in_ch * height * width, config.branch_dim)
        self.act = _activation(config.mocap_activation)

    def forward(self, grid: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        n_steps = grid.shape[1]
        if n_steps > self.frames:
            # Only padding may be cut: an item longer than the conv input would lose frames silently.
            if lengths is None or int(lengths.max()) > self.frames:
                raise ValueError(f"mocap grids longer than mocap_frames={self.frames} frames; resample the cache")
            grid, n_steps = grid[:, : self.frames], self.frames
        if lengths is not None:  # deviation: masks (the original grids had no padding)
            grid = grid.masked_fill(padding_mask(lengths, n_steps).unsqueeze(-1), 0.0)  # (B, T, Dm)
        grid = F.pad(grid, (0, 0, 0, self.frames - n_steps))  # (B, 200, Dm): same input whatever the batch
        x = self.convs(grid.unsqueeze(1))  # (B, 1, 200, 189) -> (B, 75, 13, 12)
        out: torch.Tensor = self.act(self.proj(x.flatten(1)))  # (B, 11700) -> (B, 128)
        return out


class PatamiaHead(nn.Module):
    """Two or three branches (text, audio, mocap) concatenated -> logits (B, C); features = fused layer."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: PatamiaConfig) -> None:
        super().__init__()
        unknown = sorted(set(dims) - set(ORDER))
        if unknown:
            raise ValueError(f"the patamia head takes text, audio and mocap, not {', '.join(unknown)}")
        self.modalities = [m for m in ORDER if m in dims]
        if len(self.modalities) < 2:
            raise ValueError(f"the patamia head needs at least two of text, audio, mocap; got {self.modalities}")
        d = config.branch_dim
        self.branches = nn.ModuleDict()
        if "text" in dims:  # BERT [CLS] -> Dropout 0.5 -> Dense 128 ReLU -> Dropout 0.5
            self.branches["text"] = nn.Sequential(
                nn.Dropout(config.text_dropout),
                nn.Linear(dims["text"], d),
                _activation(config.text_activation),
                nn.Dropout(config.text_dropout),
            )
        if "audio" in dims:  # deviation: pooled vector (B, D), not the 589,824-d flattened frames
            self.branches["audio"] = nn.Sequential(nn.Linear(dims["audio"], d), _activation(config.audio_activation))
        if "mocap" in dims:
            self.branches["mocap"] = MocapBranch(dims["mocap"], config)
        self.fusion = nn.Sequential(nn.Linear(d * len(self.modalities), config.fusion_hidden), nn.ReLU())
        # Logits: no softmax here (the originals' softmax + from_logits loss applied it twice).
        self.classifier = nn.Linear(config.fusion_hidden, n_classes)
        self.feature_dim = config.fusion_hidden

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        for m in self.modalities:
            if m == "mocap":
                parts.append(self.branches[m](inputs[m], inputs.get("mocap_lengths")))  # (B, 128)
            else:
                parts.append(self.branches[m](inputs[m]))  # (B, 128)
        fused = self.fusion(torch.cat(parts, dim=-1))  # (B, 128 * n_modalities) -> (B, 128)
        return self.classifier(fused), fused  # (B, C), (B, 128)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = PatamiaConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> PatamiaHead:
    return PatamiaHead(dims, n_classes, PatamiaConfig(**overrides))
