"""Per-layer pooled statistics of padded hidden states, computed where the model ran.

Copying every layer's frames to the host and pooling them there in float64 costs far more than the
forward pass on a GPU (25 layers x 1500 frames x 1024 dims per Whisper-large item). Here the masked
mean and squared deviations of each layer are reduced on the model's device; only the (L, D)
statistics and the frames of the ``--seq`` layers are copied back, cut to the valid frames first.
Accumulation is float64 on the CPU (exact parity with a float64 numpy reference) and float32 on
accelerators (two-pass: deviations from the item's mean, so no sum-of-squares cancellation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ser.extract.base import ChunkStats


def accumulate_dtype(device: torch.device) -> torch.dtype:
    """float64 on the CPU, float32 elsewhere (GPUs are slow at, and MPS lacks, float64)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def chunk_stats(
    states: Sequence[torch.Tensor],
    frames: Sequence[int],
    layer_index: Mapping[str, int],
    seq_layers: Sequence[str],
    accumulate: torch.dtype | None = None,
) -> list[ChunkStats]:
    """Moments of every layer and frames of ``seq_layers`` for each row of a padded batch.

    ``states``: L tensors of shape (B, T, D) on one device; row b's valid frames are
    ``[:frames[b]]`` (anything after is padding and never enters a statistic). ``layer_index``
    maps a layer name to its position in ``states``. Returns one [`ChunkStats`][ser.extract.base.ChunkStats] per row.
    """
    device = states[0].device
    acc = accumulate or accumulate_dtype(device)
    longest = max(int(n) for n in frames)
    lengths = torch.as_tensor([int(n) for n in frames], device=device)
    weights = (torch.arange(longest, device=device)[None, :] < lengths[:, None]).to(acc).unsqueeze(-1)  # (B, T, 1)
    counts = lengths.to(acc).clamp(min=1)[:, None]  # (B, 1)
    means: list[torch.Tensor] = []
    m2s: list[torch.Tensor] = []
    with torch.inference_mode():
        for layer in states:
            x = layer[:, :longest].to(acc)  # (B, T, D): the valid prefix only (Whisper: 1500 -> the audio's frames)
            mean = (x * weights).sum(dim=1) / counts  # (B, D)
            m2s.append(((x - mean[:, None]) * weights).square().sum(dim=1))  # (B, D)
            means.append(mean)
        mean_host = torch.stack(means, dim=1).cpu().numpy().astype(np.float64, copy=False)  # (B, L, D)
        m2_host = torch.stack(m2s, dim=1).cpu().numpy().astype(np.float64, copy=False)  # (B, L, D)
        bounds = np.cumsum([0, *(int(n) for n in frames)])
        seq_host: dict[str, np.ndarray] = {}
        for name in seq_layers:  # one copy per layer: the valid frames of all rows, concatenated on the device
            layer = states[layer_index[name]]
            valid = torch.cat([layer[row, : int(n)] for row, n in enumerate(frames)])  # (sum T, D)
            seq_host[name] = valid.float().cpu().numpy()
    return [
        ChunkStats(
            count=int(n),
            mean=mean_host[row],
            m2=m2_host[row],
            seq={name: seq_host[name][bounds[row] : bounds[row + 1]] for name in seq_layers},
        )
        for row, n in enumerate(frames)
    ]
