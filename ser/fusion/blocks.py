"""Pieces shared by several heads: padding masks, masked pooling, learnable layer weights."""

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
