"""The Whisper encoder (any size) through transformers.

Whisper's encoder always sees 30 s of log-mel input (shorter audio is padded by its feature
extractor, as in training) and emits 1500 frames (50 Hz). Only the frames that cover real audio
(``ceil(samples / 320)``) are pooled and stored. Because every input is padded to 30 s anyway,
batched and one-at-a-time outputs are identical. Longer audio is cut into 30 s chunks whose
frames are concatenated. L = encoder_layers + 1 hidden states (the input embedding included).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from ser.devices import resolve_device
from ser.extract.audio import split_chunks
from ser.extract.base import (
    ChunkStats,
    ExtractorError,
    ExtractorSpec,
    Features,
    Item,
    ItemRejected,
    layer_names,
    require,
    stitch_chunks,
)
from ser.extract.dtypes import TORCH_DTYPES, computed_dtype
from ser.extract.hf import load_pretrained, local_weights_sha256, resolved_revision
from ser.extract.options import coerce_options
from ser.extract.pooling import chunk_stats
from ser.extract.registry import extractor_family, extractor_preset
from ser.extract.ssl import final_hidden_states

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 30.0


@dataclass(kw_only=True)
class WhisperConfig:
    """Settings of the Whisper encoder extractor (everything here goes into the config hash)."""

    preset: str
    """``large-v3``, ``medium``, ``small``, ``base`` or ``tiny``."""
    model: str
    """Hub id or local folder of the checkpoint."""
    revision: str | None = None
    """Hub revision to load."""
    dtype: str = "float32"
    """Compute dtype on GPU (float16 / bfloat16 use autocast); elsewhere float32 is computed and recorded."""


class WhisperEncoderExtractor:
    """Hidden states of the Whisper encoder; see the module docstring."""

    def __init__(self, config: WhisperConfig, *, device: str = "cpu") -> None:
        transformers = require("transformers", "ssl")
        self.device = torch.device(resolve_device(device))
        self.requested_dtype = config.dtype
        self.cfg = replace(config, dtype=computed_dtype(config.dtype, self.device))  # what is computed is recorded
        model = load_pretrained(transformers.AutoModel, config.model, revision=config.revision)
        if not hasattr(model, "get_encoder") or not hasattr(model.config, "num_mel_bins"):
            raise ExtractorError(f"{config.model} is a {type(model).__name__}, not a Whisper model")
        self.revision = resolved_revision(model) or config.revision
        self.weights = local_weights_sha256(config.model)
        self.encoder = model.get_encoder().eval().to(self.device)
        self.feature_extractor = load_pretrained(
            transformers.AutoFeatureExtractor, config.model, revision=config.revision
        )
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.hop = int(self.feature_extractor.hop_length) * 2  # mel hop, then the stride-2 convolution
        n_layers = model.config.encoder_layers + 1
        dim = model.config.d_model
        self.spec = ExtractorSpec(
            name="whisper",
            preset=config.preset,
            modality="audio",
            pooled={"mean": (n_layers, dim), "std": (n_layers, dim)},
            seq_layers=dict.fromkeys(layer_names(n_layers), dim),
            sample_rate=self.sample_rate,
            frame_rate=self.sample_rate / self.hop,
            min_samples=self.hop,
            supports_padding=True,
            window_seconds=CHUNK_SECONDS,
        )
        self._layer_index = {name: i for i, name in enumerate(self.spec.seq_layers)}
        self._autocast = self.cfg.dtype != "float32"

    def config(self) -> dict[str, Any]:
        return {"family": "whisper", **asdict(self.cfg), "chunk_seconds": CHUNK_SECONDS}

    def upstream(self) -> dict[str, Any]:
        n_layers, dim = self.spec.pooled["mean"]
        return {
            "model": self.cfg.model,
            "class": type(self.encoder).__name__,
            "revision": self.revision,
            "sample_rate": self.sample_rate,
            "frame_rate": self.spec.frame_rate,
            "layers": n_layers,
            "dim": dim,
            "dtype": self.cfg.dtype,
            "mel_bins": self.feature_extractor.feature_size,
            **self.weights,
        }

    def _forward(self, chunks: list[np.ndarray], seq_layers: Sequence[str]) -> list[ChunkStats]:
        """Per chunk: moments of every layer over the frames covering real audio, and those frames of
        ``seq_layers``; the 1500-frame outputs are cut to the valid frames on the model's device."""
        features = self.feature_extractor(
            [c.astype(np.float32) for c in chunks], sampling_rate=self.sample_rate, return_tensors="pt"
        )
        inputs = features["input_features"].to(self.device)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=TORCH_DTYPES[self.cfg.dtype], enabled=self._autocast),
        ):
            output = self.encoder(inputs, output_hidden_states=True)
        states = final_hidden_states(output)  # L tensors (B, 1500, D) on the model's device
        valid = [min(states[0].shape[1], math.ceil(c.size / self.hop)) for c in chunks]
        return chunk_stats(states, valid, self._layer_index, seq_layers)

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Features per item: pooled mean/std (L, D) of all layers, (T, D) frames of ``seq_layers``."""
        max_samples = int(CHUNK_SECONDS * self.sample_rate)
        pieces: list[np.ndarray] = []
        owners: list[int] = []
        notes: list[str | None] = []
        for index, item in enumerate(items):
            if item.audio is None:
                raise ExtractorError(f"{item.id}: audio extractors need audio")
            chunks = split_chunks(item.audio, max_samples, self.spec.min_samples)
            notes.append(f"processed in {len(chunks)} chunks of <= 30 s" if len(chunks) > 1 else None)
            pieces.extend(chunks)
            owners.extend([index] * len(chunks))
        return list(stitch_chunks(len(items), owners, self._forward(pieces, seq_layers), self.spec, seq_layers, notes))


def build(
    preset: str, *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> WhisperEncoderExtractor:
    extractor_preset("whisper", preset)
    settings = coerce_options("whisper", WhisperConfig, options, allowed={"revision"})
    upstream = checkpoint or extractor_family("whisper").presets[preset]
    config = WhisperConfig(preset=preset, model=upstream, dtype=dtype, **settings)
    return WhisperEncoderExtractor(config, device=device)
