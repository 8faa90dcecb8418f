"""Corpus adapters, one module each, and the registry of them: one [`Corpus`][ser.manifests.corpora.Corpus] record per
corpus.

The registry is a literal so that listing corpora (e.g. for ``ser manifest --help``) imports no
adapter. Every adapter is a function ``scan(root: Path, **options) -> CorpusScan``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ser.errors import unknown_name
from ser.manifests.corpora.base import CorpusScan


@dataclass(frozen=True)
class Corpus:
    """One registry entry."""

    target: str
    """``module:function`` of the adapter's ``scan``."""
    description: str
    """One line on the corpus (``ser manifest CORPUS --help`` shows it)."""
    default_label_set: str | None = None
    """The label set the corpus is usually evaluated with (used when a command is given none)."""
    raw_labels: tuple[str, ...] | None = None
    """Every raw label the adapter writes (None: any, e.g. a CSV corpus). A label outside this list is a
    typo or a foreign row, while a known label outside the default label set (IEMOCAP ``fru``) is simply
    not used by that set."""


CORPORA: dict[str, Corpus] = {
    "iemocap": Corpus(
        target="ser.manifests.corpora.iemocap:scan",
        description="IEMOCAP full release: sessions, speakers, dialogs, scripts, transcripts, V/A/D, mocap",
        default_label_set="iemocap4",
        raw_labels=(
            "neu",
            "hap",
            "exc",
            "sad",
            "ang",
            "fru",
            "fea",
            "sur",
            "dis",
            "oth",
            "xxx",
        ),
    ),
    "meld": Corpus(
        target="ser.manifests.corpora.meld:scan",
        description="MELD: train/dev/test CSVs plus clip folders; ids qualified by split",
        default_label_set="meld7",
        raw_labels=(
            "neutral",
            "joy",
            "surprise",
            "anger",
            "sadness",
            "disgust",
            "fear",
        ),
    ),
    "esd": Corpus(
        target="ser.manifests.corpora.esd:scan",
        description="Emotional Speech Dataset: 20 speakers (zh + en), official train/evaluation/test",
        default_label_set="esd5",
        raw_labels=(
            "angry",
            "happy",
            "neutral",
            "sad",
            "surprise",
        ),
    ),
    "msp-podcast": Corpus(
        target="ser.manifests.corpora.msp_podcast:scan",
        description="MSP-Podcast: Labels/labels_consensus.csv, Audios/, Split_Set",
        default_label_set="msp8",
        raw_labels=(
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
    ),
    "cremad": Corpus(
        target="ser.manifests.corpora.cremad:scan",
        description="CREMA-D: AudioWAV/ActorID_Sentence_Emotion_Level.wav (+ demographics)",
        default_label_set="cremad6",
        raw_labels=(
            "anger",
            "disgust",
            "fear",
            "happy",
            "neutral",
            "sad",
        ),
    ),
    "ravdess": Corpus(
        target="ser.manifests.corpora.ravdess:scan",
        description="RAVDESS: Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac}",
        default_label_set="ravdess8",
        raw_labels=(
            "neutral",
            "calm",
            "happy",
            "sad",
            "angry",
            "fearful",
            "disgust",
            "surprised",
        ),
    ),
    "emodb": Corpus(
        target="ser.manifests.corpora.emodb:scan",
        description="Berlin EmoDB: wav/SSTTTEV.wav",
        default_label_set="emodb7",
        raw_labels=(
            "anger",
            "boredom",
            "disgust",
            "fear",
            "happiness",
            "sadness",
            "neutral",
        ),
    ),
    "tess": Corpus(
        target="ser.manifests.corpora.tess:scan",
        description="Toronto Emotional Speech Set: {OAF,YAF}_emotion/*.wav",
        default_label_set="tess7",
        raw_labels=(
            "angry",
            "disgust",
            "fear",
            "happy",
            "neutral",
            "pleasant_surprise",
            "sad",
        ),
    ),
    "csv": Corpus(
        target="ser.manifests.corpora.generic_csv:scan",
        description="Any corpus described by a CSV file (column mapping options)",
    ),
}


def corpus_info(corpus: str) -> Corpus:
    """The record of ``corpus`` (an [`UnknownNameError`][ser.errors.UnknownNameError] names the corpora)."""
    try:
        return CORPORA[corpus]
    except (KeyError, TypeError):
        raise unknown_name("corpus", corpus, CORPORA) from None


def get_adapter(corpus: str) -> Callable[..., CorpusScan]:
    """Import and return the ``scan`` function of a corpus adapter."""
    module_name, _, attr = corpus_info(corpus).target.partition(":")
    scan: Callable[..., CorpusScan] = getattr(importlib.import_module(module_name), attr)
    return scan
