"""Corpus adapters, one module each. The registry maps a corpus name to ``module:function``.

The registry is a literal so that listing corpora (e.g. for ``ser manifest --help``) imports no
adapter. Every adapter is a function ``scan(root: Path, **options) -> CorpusScan``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ser.errors import unknown_name
from ser.manifests.corpora.base import CorpusScan

ADAPTERS: dict[str, str] = {
    "iemocap": "ser.manifests.corpora.iemocap:scan",
    "meld": "ser.manifests.corpora.meld:scan",
    "esd": "ser.manifests.corpora.esd:scan",
    "msp-podcast": "ser.manifests.corpora.msp_podcast:scan",
    "cremad": "ser.manifests.corpora.cremad:scan",
    "ravdess": "ser.manifests.corpora.ravdess:scan",
    "emodb": "ser.manifests.corpora.emodb:scan",
    "tess": "ser.manifests.corpora.tess:scan",
    "csv": "ser.manifests.corpora.generic_csv:scan",
}

DESCRIPTIONS: dict[str, str] = {
    "iemocap": "IEMOCAP full release: sessions, speakers, dialogs, scripts, transcripts, V/A/D, mocap",
    "meld": "MELD: train/dev/test CSVs plus clip folders; ids qualified by split",
    "esd": "Emotional Speech Dataset: 20 speakers (zh + en), official train/evaluation/test",
    "msp-podcast": "MSP-Podcast: Labels/labels_consensus.csv, Audios/, Split_Set",
    "cremad": "CREMA-D: AudioWAV/ActorID_Sentence_Emotion_Level.wav (+ demographics)",
    "ravdess": "RAVDESS: Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac}",
    "emodb": "Berlin EmoDB: wav/SSTTTEV.wav",
    "tess": "Toronto Emotional Speech Set: {OAF,YAF}_emotion/*.wav",
    "csv": "Any corpus described by a CSV file (column mapping options)",
}

DEFAULT_LABEL_SETS: dict[str, str] = {
    "iemocap": "iemocap4",
    "meld": "meld7",
    "esd": "esd5",
    "msp-podcast": "msp8",
    "cremad": "cremad6",
    "ravdess": "ravdess8",
    "emodb": "emodb7",
    "tess": "tess7",
}
"""The label set a corpus is usually evaluated with (used when a command is given none)."""

RAW_LABELS: dict[str, tuple[str, ...]] = {
    "iemocap": ("neu", "hap", "exc", "sad", "ang", "fru", "fea", "sur", "dis", "oth", "xxx"),
    "meld": ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
    "esd": ("angry", "happy", "neutral", "sad", "surprise"),
    "msp-podcast": (
        "anger",
        "happiness",
        "sadness",
        "surprise",
        "fear",
        "disgust",
        "contempt",
        "neutral",
        "other",
        "no_agreement",
    ),
    "cremad": ("anger", "disgust", "fear", "happy", "neutral", "sad"),
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    "emodb": ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"),
    "tess": ("angry", "disgust", "fear", "happy", "neutral", "pleasant_surprise", "sad"),
}
"""Every raw label each adapter writes. A label outside its corpus' list is a typo or a foreign row,
while a known label outside the default label set (IEMOCAP ``fru``) is simply not used by that set."""


def get_adapter(corpus: str) -> Callable[..., CorpusScan]:
    """Import and return the ``scan`` function of a corpus adapter."""
    try:
        target = ADAPTERS[corpus]
    except KeyError:
        raise unknown_name("corpus", corpus, ADAPTERS) from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
