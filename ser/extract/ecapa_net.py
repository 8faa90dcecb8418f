"""SpeechBrain's ECAPA-TDNN speaker encoder and its Fbank front end, re-implemented in plain torch.

What ``speechbrain.inference.EncoderClassifier.encode_batch`` computes for a checkpoint such as
``speechbrain/spkrec-ecapa-voxceleb`` (SpeechBrain 1.1, read from its source), operation for operation,
so the numbers are those of SpeechBrain:

1. ``Fbank`` (``speechbrain.lobes.features``): ``torch.stft`` with a periodic Hamming window of
   ``win_length`` ms, hop ``hop_length`` ms, ``n_fft`` points, ``center=True`` with constant (zero)
   padding; power spectrum ``re^2 + im^2``; triangular mel filters whose centres and bands come from
   ``n_mels + 2`` points evenly spaced on the mel scale ``2595 log10(1 + f / 700)`` between ``f_min``
   and ``f_max``; ``10 log10(max(x, 1e-10))`` (reference 1.0), then floored at the utterance's maximum
   minus 80 dB.
2. ``InputNormalization(norm_type="sentence")``: minus the utterance's mean over frames (and divided by
   its standard deviation only when ``std_norm`` is true; the voxceleb checkpoint has ``std_norm: False``).
3. ``ECAPA_TDNN``: a TDNN block, SE-Res2Net blocks, multi-layer feature aggregation, attentive statistics
   pooling with global context, batch norm and a final 1x1 convolution -> (B, 1, lin_neurons).
   Every convolution pads "same" by reflection (SpeechBrain's ``Conv1d`` default), each TDNN block is
   conv -> ReLU -> batch norm, and batch norms run on their stored statistics (eval mode).

Parameter names match SpeechBrain's modules (``blocks.0.conv.conv.weight``, ``blocks.1.se_block.conv1.conv
.bias``, ``asp_bn.norm.running_mean`` ...), so a checkpoint's ``embedding_model.ckpt`` loads with
``load_state_dict``. The embedding normalisation ``mean_var_norm_emb`` is not part of it:
``encode_batch`` applies it only when called with ``normalize=True`` (its default is False).

Items are always computed at their own length (no padding): SpeechBrain's relative-length masks exclude
padding from the pooling, but its convolutions still see the padded frames, so a padded batch would change
an utterance's embedding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual alias)
from torch import nn


@dataclass(frozen=True, kw_only=True)
class FbankSettings:
    """``speechbrain.lobes.features.Fbank`` arguments (SpeechBrain's defaults)."""

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: float = 25.0
    """Window length in milliseconds."""
    hop_length: float = 10.0
    """Hop in milliseconds."""
    n_mels: int = 40
    f_min: float = 0.0
    f_max: float | None = None
    """None: half the sample rate (``sample_rate // 2``)."""

    @property
    def win_samples(self) -> int:
        return round(self.sample_rate / 1000.0 * self.win_length)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate / 1000.0 * self.hop_length)


AMIN = 1e-10
"""Filterbank power floor before the logarithm (SpeechBrain ``Filterbank.amin``)."""
TOP_DB = 80.0
"""Dynamic range kept below each utterance's maximum (SpeechBrain ``Filterbank.top_db``)."""


def _to_mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


class Fbank(nn.Module):
    """Log mel filterbank energies, (B, samples) -> (B, frames, n_mels), as SpeechBrain's ``Fbank``."""

    filters: torch.Tensor
    window: torch.Tensor

    def __init__(self, settings: FbankSettings) -> None:
        super().__init__()
        self.settings = settings
        f_max = settings.f_max if settings.f_max is not None else settings.sample_rate // 2
        if settings.f_min >= f_max:
            raise ValueError(f"f_min {settings.f_min} must be below f_max {f_max}")
        n_stft = settings.n_fft // 2 + 1
        mel = torch.linspace(_to_mel(settings.f_min), _to_mel(f_max), settings.n_mels + 2)
        hz = 700 * (10 ** (mel / 2595) - 1)
        band = (hz[1:] - hz[:-1])[:-1]
        central = hz[1:-1]
        freqs = torch.linspace(0, settings.sample_rate // 2, n_stft).repeat(settings.n_mels, 1)  # (n_mels, n_stft)
        slope = (freqs - central.repeat(n_stft, 1).transpose(0, 1)) / band.repeat(n_stft, 1).transpose(0, 1)
        triangles = torch.max(torch.zeros(1), torch.min(slope + 1.0, -slope + 1.0)).transpose(0, 1)
        self.register_buffer("filters", triangles, persistent=False)  # (n_stft, n_mels)
        self.register_buffer("window", torch.hamming_window(settings.win_samples), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        s = self.settings
        spec = torch.stft(
            wav.float(),
            s.n_fft,
            s.hop_samples,
            s.win_samples,
            self.window,
            center=True,
            pad_mode="constant",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = torch.view_as_real(spec).transpose(2, 1).pow(2).sum(-1)  # (B, frames, n_stft)
        energies = torch.matmul(power, self.filters)
        db = 10 * torch.log10(torch.clamp(energies, min=AMIN))
        floor = db.amax(dim=(-2, -1)) - TOP_DB
        return torch.max(db, floor.view(db.shape[0], 1, 1))


def sentence_norm(feats: torch.Tensor, *, std_norm: bool, epsilon: float = 1e-10) -> torch.Tensor:
    """``InputNormalization(norm_type="sentence")`` over the frames of unpadded (B, frames, D) features."""
    frames = feats.shape[1]
    mean = feats.sum(1, keepdim=True) / frames
    if not std_norm:
        return (feats - mean) / torch.ones_like(mean).clamp(min=epsilon)
    std = (feats - mean).square().sum(1, keepdim=True).div(frames).sqrt()
    return (feats - mean) / std.clamp(min=epsilon)


@dataclass(frozen=True, kw_only=True)
class EcapaSettings:
    """``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`` arguments (SpeechBrain's defaults)."""

    input_size: int
    lin_neurons: int = 192
    channels: tuple[int, ...] = (512, 512, 512, 512, 1536)
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    attention_channels: int = 128
    res2net_scale: int = 8
    se_channels: int = 128
    global_context: bool = True
    groups: tuple[int, ...] = (1, 1, 1, 1, 1)

    def __post_init__(self) -> None:
        n = len(self.channels)
        if n < 3 or len(self.kernel_sizes) != n or len(self.dilations) != n or len(self.groups) != n:
            raise ValueError(
                "channels, kernel_sizes, dilations and groups must have one entry per block (at least 3), got "
                f"{list(self.channels)}, {list(self.kernel_sizes)}, {list(self.dilations)}, {list(self.groups)}"
            )
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd, got {list(self.kernel_sizes)}")
        if any(c % self.res2net_scale for c in self.channels[1:-1]):
            raise ValueError(f"SE-Res2Net channels {list(self.channels[1:-1])} must divide by {self.res2net_scale}")

    @property
    def min_frames(self) -> int:
        """Fewest frames every reflection-padded convolution accepts (padding must stay below the length)."""
        return max(d * (k - 1) // 2 for k, d in zip(self.kernel_sizes, self.dilations, strict=True)) + 1


class _Conv(nn.Module):
    """SpeechBrain ``Conv1d`` (channels first, "same" reflection padding); the torch layer sits at ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad, self.pad), mode="reflect")
        return self.conv(x)


class _Norm(nn.Module):
    """SpeechBrain ``BatchNorm1d`` (channels first); the torch layer sits at ``.norm``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=1e-5, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class _Tdnn(nn.Module):
    """conv -> ReLU -> batch norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, groups: int = 1):
        super().__init__()
        self.conv = _Conv(in_channels, out_channels, kernel_size, dilation, groups)
        self.norm = _Norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.conv(x)))


class _Res2Net(nn.Module):
    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList([_Tdnn(width, width, kernel_size, dilation) for _ in range(scale - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        previous = x
        for i, part in enumerate(torch.chunk(x, self.scale, dim=1)):
            if i == 0:
                current = part
            elif i == 1:
                current = self.blocks[0](part)
            else:
                current = self.blocks[i - 1](part + previous)
            outputs.append(current)
            previous = current
        return torch.cat(outputs, dim=1)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.conv1 = _Conv(channels, se_channels, 1)
        self.conv2 = _Conv(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.new_ones(x.shape[0], 1, x.shape[-1])
        squeezed = (x * frames).sum(dim=2, keepdim=True) / frames.sum(dim=2, keepdim=True)
        gate = torch.sigmoid(self.conv2(torch.relu(self.conv1(squeezed))))
        return gate * x


class _SeRes2NetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, settings: EcapaSettings, index: int) -> None:
        super().__init__()
        groups = settings.groups[index]
        self.tdnn1 = _Tdnn(in_channels, out_channels, 1, 1, groups)
        self.res2net_block = _Res2Net(
            out_channels, settings.res2net_scale, settings.kernel_sizes[index], settings.dilations[index]
        )
        self.tdnn2 = _Tdnn(out_channels, out_channels, 1, 1, groups)
        self.se_block = _SqueezeExcite(out_channels, settings.se_channels)
        self.shortcut = _Conv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x) if self.shortcut is not None else x
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + residual


def _weighted_stats(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    mean = (weights * x).sum(2)
    std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(eps))
    return mean, std


class _AttentiveStatsPool(nn.Module):
    def __init__(self, channels: int, attention_channels: int, global_context: bool) -> None:
        super().__init__()
        self.global_context = global_context
        self.tdnn = _Tdnn(channels * 3 if global_context else channels, attention_channels, 1, 1)
        self.conv = _Conv(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        if self.global_context:
            ones = x.new_ones(x.shape[0], 1, frames)
            mean, std = _weighted_stats(x, ones / ones.sum(dim=2, keepdim=True))
            attn = torch.cat([x, mean.unsqueeze(2).repeat(1, 1, frames), std.unsqueeze(2).repeat(1, 1, frames)], dim=1)
        else:
            attn = x
        attn = F.softmax(self.conv(torch.tanh(self.tdnn(attn))), dim=2)
        mean, std = _weighted_stats(x, attn)
        return torch.cat((mean, std), dim=1).unsqueeze(2)


class EcapaTdnn(nn.Module):
    """(B, frames, input_size) normalised features -> (B, 1, lin_neurons) embeddings."""

    def __init__(self, settings: EcapaSettings) -> None:
        super().__init__()
        self.settings = settings
        ch, ks, ds, gs = settings.channels, settings.kernel_sizes, settings.dilations, settings.groups
        blocks: list[nn.Module] = [_Tdnn(settings.input_size, ch[0], ks[0], ds[0], gs[0])]
        blocks += [_SeRes2NetBlock(ch[i - 1], ch[i], settings, i) for i in range(1, len(ch) - 1)]
        self.blocks = nn.ModuleList(blocks)
        self.mfa = _Tdnn(ch[-2] * (len(ch) - 2), ch[-1], ks[-1], ds[-1], gs[-1])
        self.asp = _AttentiveStatsPool(ch[-1], settings.attention_channels, settings.global_context)
        self.asp_bn = _Norm(ch[-1] * 2)
        self.fc = _Conv(ch[-1] * 2, settings.lin_neurons, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.transpose(1, 2)
        outputs: list[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.mfa(torch.cat(outputs[1:], dim=1))
        x = self.fc(self.asp_bn(self.asp(x)))
        return x.transpose(1, 2)


class SpeakerEncoder(nn.Module):
    """Fbank -> sentence mean normalisation -> ECAPA-TDNN: (B, samples) of equal length -> (B, lin_neurons)."""

    def __init__(self, fbank: FbankSettings, ecapa: EcapaSettings, *, std_norm: bool, epsilon: float = 1e-10):
        super().__init__()
        self.compute_features = Fbank(fbank)
        self.std_norm = std_norm
        self.epsilon = epsilon
        self.embedding_model = EcapaTdnn(ecapa)

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        feats = sentence_norm(self.compute_features(wavs), std_norm=self.std_norm, epsilon=self.epsilon)
        return self.embedding_model(feats)[:, 0]

    @property
    def min_samples(self) -> int:
        """Shortest audio giving enough frames for every convolution (frames = 1 + samples // hop)."""
        return (self.embedding_model.settings.min_frames - 1) * self.compute_features.settings.hop_samples


def as_int_tuple(values: Sequence[int] | int, name: str) -> tuple[int, ...]:
    """A hyperparameter list as a tuple of ints (a scalar is refused, naming it)."""
    if isinstance(values, int | float | str) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of integers, got {values!r}")
    return tuple(int(v) for v in values)
