"""CNN + BiLSTM on cached log-mel frames (Copenhagen SER project).

The source's training script imports ``CNNBiLSTMSER``, but the class exists nowhere in the
project's history (and its README gives no architecture), so this is our design of the usual
shape of such a model:

* per conv block: Conv2d 3×3 (stride 1, padding 1) → BatchNorm → ReLU → MaxPool (2, 1) over the
  mel axis only, so the time resolution is kept (one output per input frame); channels 32-64-128,
  so 64 mels become 128 channels × 8 bands = 1024 features per frame;
* a bidirectional LSTM (hidden 128 per direction) over the valid frames only
  (``pack_padded_sequence``);
* masked mean over the valid frames → Dropout → Linear C.

Padding is neutral by construction, as in ``ser.fusion.heads.resnet18``: the input is shifted by
``pad_value`` (the log floor) so silence is 0, padded frames are reset to 0 before every
convolution (a 3×3 "same" convolution at the boundary then sees exactly its own zero padding),
batch-norm statistics use valid frames only (``MaskedBatchNorm2d``), the LSTM never sees padded
frames and the mean ignores them. An item's logits therefore do not depend on the batch padding,
in eval and in training mode (up to float summation order).

Deviation: SpecAugment widths count frames of the cache, so its time masks are about 3x shorter
than the source's 32 ms frames made them (``ser.fusion.augment`` gives the numbers and the fix).

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["cnn_bilstm"].recipes`` in ``ser.fusion.heads`` (``ser fusion show cnn_bilstm``). Input scaling: none
(``train.normalize`` only z-scores pooled vectors, never sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ser.fusion.augment import SpecAugment
from ser.fusion.blocks import LOG_FLOOR, MaskedBatchNorm2d, masked_pool, padding_mask, zero_padded_frames

INPUTS = {"audio": "seq"}
EXAMPLE_DIMS = {"audio": 64}


@dataclass(kw_only=True)
class CnnBiLstmConfig:
    """Hyper-parameters of the CNN + BiLSTM log-mel head (our design; the source class is missing)."""

    channels: tuple[int, ...] = (32, 64, 128)
    """Output channels of the conv blocks; each block halves the mel axis (64 mels need <= 6 blocks)."""
    lstm_hidden: int = 128
    """Hidden size of each LSTM direction."""
    lstm_layers: int = 1
    """Stacked BiLSTM layers."""
    dropout: float = 0.3
    """Dropout between LSTM layers (if several) and before the output layer."""
    specaugment: bool = True
    """Apply SpecAugment (``ser.fusion.augment``, source parameters) to the frames in training mode."""
    pad_value: float = LOG_FLOOR
    """Log-mel value of silence, subtracted from the input so silence, batch padding and the
    convolutions' zero padding coincide (-80 for the ``librosa`` dB preset)."""


class _ConvBlock(nn.Module):
    """Conv 3×3 → masked BN → ReLU → MaxPool over mels (2, 1); time length unchanged."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = MaskedBatchNorm2d(c_out)
        self.pool = nn.MaxPool2d((2, 1))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.conv(x), valid))
        return zero_padded_frames(self.pool(out), valid)


class CnnBiLstmHead(nn.Module):
    """(B, T, n_mels) log-mel frames + (B,) lengths -> (B, C) logits."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: CnnBiLstmConfig) -> None:
        super().__init__()
        if set(dims) != {"audio"}:
            raise ValueError(f"the cnn_bilstm head takes log-mel audio frames only (--audio), got {sorted(dims)}")
        n_mels = dims["audio"]
        bands = n_mels >> len(config.channels)
        if not config.channels or bands < 1:
            raise ValueError(f"cnn_bilstm: {len(config.channels)} conv blocks halve {n_mels} mels to nothing")
        self.config = config
        self.augment = SpecAugment() if config.specaugment else None
        blocks: list[nn.Module] = []
        c_in = 1
        for width in config.channels:
            blocks.append(_ConvBlock(c_in, width))
            c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.lstm = nn.LSTM(
            c_in * bands,
            config.lstm_hidden,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * config.lstm_hidden, n_classes)
        self.feature_dim = 2 * config.lstm_hidden
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        audio = inputs["audio"]
        n_frames = audio.shape[1]
        lengths = inputs["audio_lengths"].to(audio.device).long().clamp(min=0, max=n_frames)
        if self.augment is not None:
            audio = self.augment(audio, lengths)
        valid = ~padding_mask(lengths, n_frames)
        x = (audio - self.config.pad_value).masked_fill(~valid[:, :, None], 0.0)
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, T)
        for block in self.blocks:
            x = block(x, valid)
        frames = x.flatten(1, 2).transpose(1, 2)  # (B, T, channels × bands)
        # pack_padded_sequence needs lengths >= 1; an empty item reads one zero frame, harmlessly.
        packed = pack_padded_sequence(frames, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = self.lstm(packed)
        hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=n_frames)
        features = masked_pool(hidden, lengths.clamp(min=1), "mean")
        return self.out(self.dropout(features)), features

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = CnnBiLstmConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> CnnBiLstmHead:
    return CnnBiLstmHead(dims, n_classes, CnnBiLstmConfig(**overrides))
