"""The upstream with its top-k transformer layers unfrozen, plus the head each mode trains, and the
NT-Xent loss of contrastive adaptation."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ser.errors import UserError


def transformer_layers(upstream: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a wav2vec2-style encoder (HuBERT, wav2vec2, WavLM)."""
    layers = getattr(getattr(upstream, "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise UserError(
            f"{type(upstream).__name__} has no encoder.layers; ser finetune takes HuBERT, wav2vec2 and WavLM encoders"
        )
    return layers


def unfreeze_top(upstream: nn.Module, k: int | None) -> list[str]:
    """Freeze everything, then unfreeze the top ``k`` transformer layers (None: all of them).

    Pre-LN ("stable layer norm") encoders apply a final LayerNorm after the last layer: it is part
    of the top and trains whenever k > 0. Post-LN encoders normalise before the first layer, which
    (with the convolutional position embedding and the CNN feature encoder) stays frozen.
    Returns the names of the trainable parameters.
    """
    for parameter in upstream.parameters():
        parameter.requires_grad_(False)
    layers = transformer_layers(upstream)
    n = len(layers)
    k = n if k is None else k
    if not 0 <= k <= n:
        raise UserError(f"--unfreeze {k}: the model has {n} transformer layers")
    modules: list[nn.Module] = list(layers[n - k :])
    if k > 0 and getattr(upstream.config, "do_stable_layer_norm", False):
        modules.append(upstream.get_submodule("encoder.layer_norm"))
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return [name for name, p in upstream.named_parameters() if p.requires_grad]


def hidden_size(upstream: nn.Module) -> int:
    """Width H of the upstream's hidden states, read from its Hugging Face config."""
    size = getattr(getattr(upstream, "config", None), "hidden_size", None)
    if not isinstance(size, int):
        raise UserError(
            f"{type(upstream).__name__} has no integer config.hidden_size; ser finetune takes Hugging Face encoders"
        )
    return size


def save_pretrained(upstream: nn.Module, folder: Path) -> None:
    """Write the upstream's weights and config to ``folder`` the Hugging Face way (``from_pretrained`` reads it)."""
    save = getattr(upstream, "save_pretrained", None)
    if not callable(save):
        raise UserError(f"{type(upstream).__name__} has no save_pretrained; ser finetune takes Hugging Face encoders")
    save(folder)


def set_train_mode(upstream: nn.Module) -> None:
    """Frozen parts in eval mode (no dropout noise, no SpecAugment-style masking), trainable layers
    in train mode. (Several seed repositories kept frozen encoders in train mode; we do not.)"""
    upstream.eval()
    for layer in transformer_layers(upstream):
        if any(p.requires_grad for p in layer.parameters()):
            layer.train()


def mean_embedding(upstream: nn.Module, waves: torch.Tensor) -> torch.Tensor:
    """(B, T) waveforms (equal length, no padding) -> (B, H) mean of the last hidden state over frames."""
    return upstream(waves).last_hidden_state.mean(dim=1)


class ClassifierHead(nn.Module):
    """Supervised head: dropout then a linear layer on the mean-pooled last hidden state."""

    def __init__(self, hidden: int, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, C) logits."""
        return self.net(pooled)


class ProjectionHead(nn.Module):
    """FleSER's projection: Linear H->H, ReLU, Linear H->P."""

    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, P)."""
        return self.net(pooled)


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR) loss of two views: ``first[i]`` and ``second[i]`` are positives, every other
    of the 2N embeddings is a negative.

    Args:
        first, second: (N, P) projections of the two views (any scale: L2-normalised here).
        temperature: the softmax temperature tau.

    Returns:
        Scalar: mean over the 2N anchors of -log softmax(cos / tau) at the partner view, the anchor
        itself masked out.
    """
    if first.shape != second.shape or first.dim() != 2 or first.shape[0] < 2:
        raise ValueError(
            f"nt_xent needs two (N, P) views with N >= 2, got {tuple(first.shape)} and {tuple(second.shape)}"
        )
    n = first.shape[0]
    z = F.normalize(torch.cat([first, second]), dim=1)  # (2N, P)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)
