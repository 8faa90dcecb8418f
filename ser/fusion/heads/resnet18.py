"""ResNet-18 on cached log-mel frames, trained from scratch (Copenhagen SER project).

The source used ``torchvision.models.resnet18(weights=None)`` with ``conv1`` replaced by a 1-channel
7×7 stride-2 convolution and ``fc = Identity`` (512-d global-average-pooled output), then
Linear 512→128 → ReLU → Dropout 0.3 → Linear→C, on ``(B, 1, 64, T)`` spectrograms. torchvision is
not available with our torch build, so the network is written here with ``torch.nn``: the same
layout (BasicBlock ×[2, 2, 2, 2], widths 64-128-256-512, conv1 7×7/2 + BN + ReLU + 3×3/2 max-pool,
1×1 strided projection shortcuts) and torchvision's default initialisation (Kaiming-normal fan-out
convolutions, BN weight 1 / bias 0, no zero-init of the last BN of each block).

Padding (the source zero-padded every item to the dataset maximum with 0 dB = loudest; here the
cache is unpadded and batches are padded with zeros by the loader):

* the input is shifted by ``pad_value`` (the log floor: ``log(1e-6) ≈ -13.8155`` for the ``64``
  preset; use -80 for the ``librosa`` dB preset) so that silence is 0, which is also what the
  convolutions' own zero padding stands for;
* after every stage the features beyond each item's valid (downsampled) length are set to 0, so a
  convolution at the boundary sees exactly the zeros it would see through its own padding when the
  item is alone, and the max-pool (after ReLU, so valid values are >= 0) is unaffected by them;
* batch normalisation computes its training statistics over valid positions only
  ([`MaskedBatchNorm2d`][ser.fusion.blocks.MaskedBatchNorm2d]);
* the global average pool runs over the valid time positions only.

Hence an item's logits do not depend on the padding the batch adds, in eval and in training mode
(up to float summation order; ``tests/fusion/heads/test_resnet18.py``).

Deviation: SpecAugment widths count frames of the cache, so its time masks are about 3x shorter
than the source's 32 ms frames made them (``ser.fusion.augment`` gives the numbers and the fix).

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["resnet18"].recipes`` in ``ser.fusion.heads`` (``ser fusion show resnet18``). Input scaling: none
(``train.normalize`` only z-scores pooled vectors, never sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ser.fusion.augment import SpecAugment
from ser.fusion.blocks import LOG_FLOOR, MaskedBatchNorm2d, conv_out_lengths, padding_mask, zero_padded_frames

INPUTS = {"audio": "seq"}
EXAMPLE_DIMS = {"audio": 64}


class _BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual (1×1 strided projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = MaskedBatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = MaskedBatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut_conv: nn.Conv2d | None = None
        self.shortcut_bn: MaskedBatchNorm2d | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut_conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.shortcut_bn = MaskedBatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, C, F, T) with zeros beyond ``lengths`` -> same convention at the output size."""
        out_lengths = conv_out_lengths(lengths, 3, self.stride, 1)
        out = self.conv1(x)
        valid = ~padding_mask(out_lengths, out.shape[-1])
        out = zero_padded_frames(self.relu(self.bn1(out, valid)), valid)
        out = self.bn2(self.conv2(out), valid)
        if self.shortcut_conv is not None and self.shortcut_bn is not None:
            identity = self.shortcut_bn(self.shortcut_conv(x), valid)
        else:
            identity = x
        return zero_padded_frames(self.relu(out + identity), valid), out_lengths


@dataclass(kw_only=True)
class ResNet18Config:
    """Hyper-parameters of the ResNet-18 log-mel head."""

    blocks: tuple[int, ...] = (2, 2, 2, 2)
    """BasicBlocks per stage (ResNet-18)."""
    widths: tuple[int, ...] = (64, 128, 256, 512)
    """Channels per stage; the first stage also sets conv1's output channels."""
    hidden: int = 128
    """Width of the hidden layer of the classifier (Linear 512→128 → ReLU → Dropout → Linear)."""
    dropout: float = 0.3
    """Dropout before the output layer."""
    specaugment: bool = True
    """Apply SpecAugment (``ser.fusion.augment``, source parameters) to the frames in training mode."""
    pad_value: float = LOG_FLOOR
    """Log-mel value of silence, subtracted from the input so silence, batch padding and the
    convolutions' zero padding coincide (-80 for the ``librosa`` dB preset)."""


class ResNet18Head(nn.Module):
    """(B, T, n_mels) log-mel frames + (B,) lengths -> (B, C) logits, via (B, 1, n_mels, T) ResNet-18."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: ResNet18Config) -> None:
        super().__init__()
        if set(dims) != {"audio"}:
            raise ValueError(f"the resnet18 head takes log-mel audio frames only (--audio), got {sorted(dims)}")
        if len(config.blocks) != len(config.widths) or not config.blocks:
            raise ValueError("resnet18: blocks and widths must be non-empty and of equal length")
        self.config = config
        self.augment = SpecAugment() if config.specaugment else None
        self.conv1 = nn.Conv2d(1, config.widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = MaskedBatchNorm2d(config.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        c_in = config.widths[0]
        for index, (n_blocks, width) in enumerate(zip(config.blocks, config.widths, strict=True)):
            for block in range(n_blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(_BasicBlock(c_in, width, stride))
                c_in = width
        self.blocks = nn.ModuleList(stages)
        self.classifier = nn.Sequential(nn.Linear(c_in, config.hidden), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, n_classes)
        self.feature_dim = config.hidden
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 512) masked global average of the last stage."""
        audio = inputs["audio"]
        lengths = inputs["audio_lengths"].to(audio.device).long().clamp(max=audio.shape[1])
        if self.augment is not None:
            audio = self.augment(audio, lengths)
        valid = ~padding_mask(lengths, audio.shape[1])
        x = (audio - self.config.pad_value).masked_fill(~valid[:, :, None], 0.0)
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, T)
        x = self.conv1(x)
        lengths = conv_out_lengths(lengths, 7, 2, 3)
        valid = ~padding_mask(lengths, x.shape[-1])
        x = zero_padded_frames(self.relu(self.bn1(x, valid)), valid)
        x = self.maxpool(x)
        lengths = conv_out_lengths(lengths, 3, 2, 1)
        x = zero_padded_frames(x, ~padding_mask(lengths, x.shape[-1]))
        for block in self.blocks:
            x, lengths = block(x, lengths)
        # Padded frames are 0: sum everything, divide by the valid count (n_freq × valid frames).
        count = (lengths.clamp(min=1) * x.shape[2]).to(x.dtype)
        return x.sum(dim=(2, 3)) / count[:, None]

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.classifier(self.embed(inputs))
        return self.out(self.dropout(features)), features

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = ResNet18Config
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> ResNet18Head:
    return ResNet18Head(dims, n_classes, ResNet18Config(**overrides))
