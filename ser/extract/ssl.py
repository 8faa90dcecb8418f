"""Self-supervised speech encoders (HuBERT, wav2vec 2.0, WavLM) through transformers.

For every item: mean and std over time of EVERY hidden state (the CNN/projection output plus each
transformer layer: L = num_hidden_layers + 1), and the frames of the layers chosen with ``--seq``.

Padding. Checkpoints whose feature encoder uses group normalisation (``feat_extract_norm ==
"group"``: wav2vec2-base, hubert-base, wavlm-base(-plus)) were trained without attention masks,
and zero padding changes their output (the group norm pools over time, and unmasked attention
sees the padding). For those the spec says ``supports_padding=False``: the runner only batches
items of identical length, and this class runs groups of identical length together, so every item
is computed exactly as if alone. Layer-norm checkpoints (the large models) take padded batches
with an attention mask.

Long audio is cut into ``max_seconds`` chunks whose frames are concatenated; the pooled
statistics are those of the whole concatenated sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ser.cache.adaptation import AdaptationError, find_provenance, record_from_provenance
from ser.devices import resolve_device
from ser.extract.audio import pad_to_minimum, split_chunks
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
from ser.extract.hf import load_pretrained, local_weights_sha256, resolved_revision, tensors_sha256
from ser.extract.options import coerce_options
from ser.extract.pooling import chunk_stats
from ser.extract.registry import extractor_family, extractor_preset

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SslConfig:
    """Settings of a self-supervised speech extractor (everything here goes into the config hash)."""

    family: str
    """``hubert``, ``wav2vec2`` or ``wavlm``."""
    preset: str
    """Preset name (``base``, ``large`` ...)."""
    model: str
    """Hub id or local folder of the checkpoint."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load."""
    max_seconds: float = 30.0
    """Longer audio is cut into chunks of this length (frames are concatenated afterwards)."""
    dtype: str = "float32"
    """Compute dtype: float16 / bfloat16 (autocast) apply on CUDA only. The extractor records the dtype it
    actually computes in (float32 off CUDA, see [`computed_dtype`][ser.extract.dtypes.computed_dtype]), so
    the config hash names what produced the numbers."""
    normalize: bool | None = None
    """Zero-mean unit-variance input normalisation; None = what the checkpoint's feature extractor says."""


def final_hidden_states(output: Any) -> list[torch.Tensor]:
    """All hidden states with the last one equal to the model output.

    Depending on the transformers version, the last entry of ``hidden_states`` of pre-LN encoders
    (the large wav2vec2-style models, Whisper) is taken before or after the final LayerNorm;
    ``last_hidden_state`` is always after it, so it replaces the last entry: one meaning everywhere.
    """
    states = list(output.hidden_states)
    states[-1] = output.last_hidden_state
    return states


def adaptation_of(model: str, digest: str | None = None) -> dict[str, Any]:
    """``{"adaptation": record}`` for weights ``ser finetune`` adapted (which fold and utterances adapted
    them; ``ser fit`` checks it against every fold it tests), else ``{}``. Found in the checkpoint folder's
    ``ser_finetune.json``, else its safetensors metadata, else the adaptation registry under ``digest``
    (the weights' ``tensors_sha256``), so a copy or re-save of the weights without the side file is still
    recognised ([`find_provenance`][ser.cache.adaptation.find_provenance])."""
    folder = Path(model).expanduser()
    try:
        found = find_provenance(folder if folder.is_dir() else None, digest)
        if found is None:
            return {}
        provenance, path = found
        return {"adaptation": record_from_provenance(folder, provenance, provenance_file=path).to_dict()}
    except AdaptationError as err:
        raise ExtractorError(str(err)) from err
    except (KeyError, TypeError) as err:
        raise ExtractorError(f"the fine-tuning provenance of {model} lacks {err}; re-run ser finetune") from err


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Samples one output frame of a stack of 1-D convolutions sees (400 for wav2vec2's encoder)."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


class SslExtractor:
    """Hidden states of a transformers speech encoder; see the module docstring."""

    def __init__(self, config: SslConfig, *, device: str = "cpu") -> None:
        transformers = require("transformers", "ssl")
        self.device = torch.device(resolve_device(device))
        self.requested_dtype = config.dtype
        # resolved before anything records the config: the config hash names the dtype actually computed
        self.cfg = config = replace(config, dtype=computed_dtype(config.dtype, self.device))
        self.model = load_pretrained(transformers.AutoModel, config.model, revision=config.revision)
        self.weights = local_weights_sha256(config.model)
        self.tensors_sha256 = tensors_sha256(self.model)
        self.model.eval().to(self.device)
        model_config = self.model.config
        if not hasattr(model_config, "conv_kernel"):
            raise ExtractorError(
                f"{config.model} is a {type(self.model).__name__}, not a wav2vec2-style speech "
                "encoder (HuBERT, wav2vec2, WavLM)"
            )
        try:
            feature_extractor = load_pretrained(
                transformers.AutoFeatureExtractor, config.model, revision=config.revision
            )
            self.sample_rate = int(feature_extractor.sampling_rate)
            checkpoint_normalize = bool(getattr(feature_extractor, "do_normalize", False))
        except (ExtractorError, OSError, ValueError):
            logger.warning("%s has no feature-extractor config; assuming 16 kHz input", config.model)
            self.sample_rate, checkpoint_normalize = 16000, False
        self.normalize = checkpoint_normalize if config.normalize is None else config.normalize
        n_layers = model_config.num_hidden_layers + 1
        dim = model_config.hidden_size
        stride = int(np.prod(model_config.conv_stride))
        self.spec = ExtractorSpec(
            name=config.family,
            preset=config.preset,
            modality="audio",
            pooled={"mean": (n_layers, dim), "std": (n_layers, dim)},
            seq_layers=dict.fromkeys(layer_names(n_layers), dim),
            sample_rate=self.sample_rate,
            frame_rate=self.sample_rate / stride,
            min_samples=receptive_field(model_config.conv_kernel, model_config.conv_stride),
            supports_padding=getattr(model_config, "feat_extract_norm", "layer") == "layer",
        )
        self._layer_index = {name: i for i, name in enumerate(self.spec.seq_layers)}
        self._autocast = config.dtype != "float32"  # computed_dtype leaves half precision on CUDA only

    def config(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "normalize": self.normalize, "sample_rate": self.sample_rate}

    def upstream(self) -> dict[str, Any]:
        n_layers, dim = self.spec.pooled["mean"]
        return {
            "model": self.cfg.model,
            "class": type(self.model).__name__,
            "revision": resolved_revision(self.model) or self.cfg.revision,
            "sample_rate": self.sample_rate,
            "frame_rate": self.spec.frame_rate,
            "layers": n_layers,
            "dim": dim,
            "dtype": self.cfg.dtype,
            "feat_extract_norm": getattr(self.model.config, "feat_extract_norm", None),
            "attention_mask_used": self.spec.supports_padding,
            **self.weights,
            "tensors_sha256": self.tensors_sha256,
            **adaptation_of(self.cfg.model, self.tensors_sha256),
        }

    # ------------------------------------------------------------------ forward

    def _prepare(self, audio: np.ndarray) -> np.ndarray:
        if self.normalize:
            return ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)
        return audio.astype(np.float32, copy=False)

    def _forward(self, chunks: list[np.ndarray], seq_layers: Sequence[str]) -> list[ChunkStats]:
        """Per chunk (input order kept): moments of every layer over its valid frames, and the (T_valid, D)
        frames of ``seq_layers``; pooled on the model's device (``ser.extract.pooling``)."""
        results: list[ChunkStats | None] = [None] * len(chunks)
        if self.spec.supports_padding:
            groups = [list(range(len(chunks)))]
        else:  # identical lengths only: no padding ever reaches a group-norm encoder
            by_length: dict[int, list[int]] = {}
            for index, chunk in enumerate(chunks):
                by_length.setdefault(chunk.size, []).append(index)
            groups = list(by_length.values())
        for group in groups:
            lengths = [chunks[i].size for i in group]
            batch = np.zeros((len(group), max(lengths)), dtype=np.float32)
            mask = np.zeros((len(group), max(lengths)), dtype=np.int64)
            for row, index in enumerate(group):
                batch[row, : lengths[row]] = self._prepare(chunks[index])
                mask[row, : lengths[row]] = 1
            inputs = {"input_values": torch.from_numpy(batch).to(self.device)}
            if self.spec.supports_padding:
                inputs["attention_mask"] = torch.from_numpy(mask).to(self.device)
            with (
                torch.inference_mode(),
                torch.autocast(self.device.type, dtype=TORCH_DTYPES[self.cfg.dtype], enabled=self._autocast),
            ):
                output = self.model(**inputs, output_hidden_states=True)
            frames = self.model._get_feat_extract_output_lengths(torch.tensor(lengths)).tolist()
            states = final_hidden_states(output)  # L tensors (B, T, D) on the model's device
            for row, stats in enumerate(chunk_stats(states, frames, self._layer_index, seq_layers)):
                results[group[row]] = stats
        return [r for r in results if r is not None]

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Features per item: pooled mean/std (L, D) of all layers, (T, D) frames of ``seq_layers``."""
        max_samples = int(self.cfg.max_seconds * self.sample_rate)
        pieces: list[np.ndarray] = []
        owners: list[int] = []
        notes: list[str | None] = []
        for index, item in enumerate(items):
            if item.audio is None:
                raise ExtractorError(f"{item.id}: audio extractors need audio")
            audio, note = pad_to_minimum(item.audio, self.spec.min_samples)
            chunks = split_chunks(audio, max_samples, self.spec.min_samples)
            if len(chunks) > 1:
                chunked = f"processed in {len(chunks)} chunks of <= {self.cfg.max_seconds} s"
                note = f"{note}; {chunked}" if note else chunked
            notes.append(note)
            pieces.extend(chunks)
            owners.extend([index] * len(chunks))
        return list(stitch_chunks(len(items), owners, self._forward(pieces, seq_layers), self.spec, seq_layers, notes))


def _build(
    family: str,
    preset: str,
    *,
    checkpoint: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    **options: Any,
) -> SslExtractor:
    extractor_preset(family, preset)
    settings = coerce_options(family, SslConfig, options, allowed={"max_seconds", "revision", "normalize"})
    if settings.get("max_seconds", 1.0) <= 0:
        raise ExtractorError(f"{family}: max_seconds must be > 0, not {settings['max_seconds']}")
    config = SslConfig(
        family=family,
        preset=preset,
        model=checkpoint or extractor_family(family).presets[preset],
        dtype=dtype,
        **settings,
    )
    return SslExtractor(config, device=device)


def build_hubert(preset: str, **kwargs: Any) -> SslExtractor:
    return _build("hubert", preset, **kwargs)


def build_wav2vec2(preset: str, **kwargs: Any) -> SslExtractor:
    return _build("wav2vec2", preset, **kwargs)


def build_wavlm(preset: str, **kwargs: Any) -> SslExtractor:
    return _build("wavlm", preset, **kwargs)
