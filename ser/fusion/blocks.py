"""Pieces shared by several heads, so that no head imports another head's module.

* masks and pooling: [`padding_mask`][ser.fusion.blocks.padding_mask], [`masked_pool`][ser.fusion.blocks.masked_pool]
  (padding at the end, given lengths), [`pool_unpadded`][ser.fusion.blocks.pool_unpadded] (any boolean padding mask,
  e.g. two padded sequences concatenated);
* [`LayerWeights`][ser.fusion.blocks.LayerWeights]: SUPERB-style softmax weights over cached layers (the trainer's
  mixer);
* the 3M-SER / 4M-SER pieces: [`AudioNorm`][ser.fusion.blocks.AudioNorm] (``layer_norm`` / ``min_max`` / ``none``),
  [`SelfAttentionBlock`][ser.fusion.blocks.SelfAttentionBlock] (masked attention -> Linear -> LayerNorm, no residual),
  [`check_heads_divide`][ser.fusion.blocks.check_heads_divide];
* the log-mel convolution pieces (ResNet-18, CNN + BiLSTM): [`LOG_FLOOR`][ser.fusion.blocks.LOG_FLOOR],
  [`conv_out_lengths`][ser.fusion.blocks.conv_out_lengths],
  [`zero_padded_frames`][ser.fusion.blocks.zero_padded_frames],
  [`MaskedBatchNorm2d`][ser.fusion.blocks.MaskedBatchNorm2d].

Shapes: B batch, T / N / F / L sequence positions, D / A features, C channels.
"""

from __future__ import annotations

import torch
from torch import nn


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True at PADDED positions (the convention of
    ``nn.MultiheadAttention``'s ``key_padding_mask``)."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


def masked_pool(x: torch.Tensor, lengths: torch.Tensor | None, how: str) -> torch.Tensor:
    """Pool (B, T, D) over valid time steps -> (B, D).

    ``how``: ``mean``, ``max``, ``min`` or ``first`` (position 0). Padded steps never count.
    """
    if how == "first":
        return x[:, 0]
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[1], device=x.device, dtype=torch.long)
    pad = padding_mask(lengths, x.shape[1]).unsqueeze(-1)
    if how == "mean":
        total = x.masked_fill(pad, 0.0).sum(dim=1)
        return total / lengths.clamp(min=1).unsqueeze(-1).to(x.dtype)
    if how == "max":
        return x.masked_fill(pad, float("-inf")).amax(dim=1)
    if how == "min":
        return x.masked_fill(pad, float("inf")).amin(dim=1)
    raise ValueError(f"unknown pooling {how!r}; use mean, max, min or first")


def pool_unpadded(x: torch.Tensor, pad: torch.Tensor, how: str) -> torch.Tensor:
    """Pool (B, L, D) over the positions where ``pad`` (B, L) is False -> (B, D).

    [`masked_pool`][ser.fusion.blocks.masked_pool] takes lengths, i.e. padding at the end; a concatenation of two padded
    sequences has padding in the middle, hence this mask-based twin. ``how``: ``first`` (position 0, which must be
    valid), ``mean``, ``max`` or ``min``."""
    if how == "first":
        return x[:, 0]
    fill = pad.unsqueeze(-1)  # (B, L, 1)
    if how == "mean":
        count = (~pad).sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)  # (B, 1)
        return x.masked_fill(fill, 0.0).sum(dim=1) / count
    if how == "max":
        return x.masked_fill(fill, float("-inf")).amax(dim=1)
    if how == "min":
        return x.masked_fill(fill, float("inf")).amin(dim=1)
    raise ValueError(f"unknown pooling {how!r}; use first, mean, max or min")


class LayerWeights(nn.Module):
    """SUPERB-style learnable softmax weights over the L cached layers: (B, L, D) -> (B, D)."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.logits, dim=0)
        return torch.einsum("l,bld->bd", weights, stacked)

    def weights(self) -> list[float]:
        """Current softmax weights, for reports and plots."""
        return torch.softmax(self.logits.detach(), dim=0).cpu().tolist()


# ------------------------------------------------------------------------- 3M-SER / 4M-SER pieces


AUDIO_NORMS = ("layer_norm", "min_max", "none")
"""Audio normalisations of 3M-SER's three model types (``_3M_SERLayerNorm``, ``_3M_SERMinMax``, ``_3M_SER``)."""


def min_max_valid(audio: torch.Tensor, pad: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, N, A) -> (B, N, A) scaled to [0, 1] per item, min and max over the item's valid patches only.

    ``pad`` (B, N) is True at padded patches; those come out as 0. Deviation: the ``eps`` floor on
    ``max - min`` (the original divides by zero when an item is constant)."""
    fill = pad.unsqueeze(-1)  # (B, N, 1)
    low = audio.masked_fill(fill, float("inf")).amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    high = audio.masked_fill(fill, float("-inf")).amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    scaled = (audio - low) / (high - low).clamp(min=eps)  # (B, N, A)
    return scaled.masked_fill(fill, 0.0)


class AudioNorm(nn.Module):
    """The ``audio_norm`` choice as a module: (B, N, A), padding mask (B, N) -> (B, N, A)."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        self.kind = kind
        # Only "layer_norm" has parameters; the other two build nothing.
        self.layer_norm = nn.LayerNorm(dim) if kind == "layer_norm" else None

    def forward(self, audio: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        if self.layer_norm is not None:
            normed: torch.Tensor = self.layer_norm(audio)  # per patch: padding cannot leak into valid patches
            return normed
        if self.kind == "min_max":
            return min_max_valid(audio, pad)
        return audio


class SelfAttentionBlock(nn.Module):
    """Masked self-attention -> Linear -> LayerNorm, no residual: (B, L, D_in) -> (B, L, D_out).

    Outputs at padded positions are computed but meaningless; the caller masks them downstream."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim_in, heads, dropout=dropout, batch_first=True)
        self.linear = nn.Linear(dim_in, dim_out)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, key_padding_mask=pad, need_weights=False)  # (B, L, D_in)
        out: torch.Tensor = self.norm(self.linear(attended))  # (B, L, D_out)
        return out


def check_heads_divide(dims: dict[str, int], heads: int, name: str) -> None:
    """Both attentions need their width divisible by the number of heads."""
    for modality in ("text", "audio"):
        if dims[modality] % heads:
            raise ValueError(
                f"the {name} head attends over {modality} features of width {dims[modality]}, which "
                f"{heads} attention heads do not divide; pass heads=<a divisor of it>"
            )


# ------------------------------------------------------------------------ log-mel convolution pieces


LOG_FLOOR = -13.815510557964274
"""``log(1e-6)``: the value of silence in the ``64`` log-mel preset (``ser.extract.logmel``)."""


def conv_out_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Valid output length along an axis of a convolution / pooling for valid input ``lengths``
    (PyTorch's ``floor((L + 2p - k) / s) + 1``; 0 stays 0)."""
    return ((lengths + 2 * padding - kernel) // stride + 1).clamp(min=0)


def zero_padded_frames(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, C, F, T) features, (B, T) bool valid frames -> features with padded frames set to 0."""
    return x.masked_fill(~valid[:, None, None, :], 0.0)


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` over ``(B, C, F, T)`` whose training statistics (and running-statistic
    updates) use the valid time frames only. Eval mode uses the running statistics, as usual, so
    padding never matters there; the state dict is that of ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if valid is None or not use_batch_stats:
            return super().forward(x)
        weight = valid[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
        count = weight.sum() * x.shape[2]
        mean = (x * weight).sum(dim=(0, 2, 3)) / count.clamp(min=1)
        centred = x - mean[None, :, None, None]
        var = (centred.square() * weight).sum(dim=(0, 2, 3)) / count.clamp(min=1)
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        if self.training and self.track_running_stats:
            # track_running_stats=True registers the three buffers
            assert tracked is not None and running_mean is not None and running_var is not None
            with torch.no_grad():
                tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                running_mean.lerp_(mean.detach(), momentum)
                running_var.lerp_(unbiased.detach(), momentum)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out
