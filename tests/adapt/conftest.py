"""A small synthetic speech-like corpus on disk (class-dependent tones in noise, 4 speakers) and
tiny random upstreams saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

LABELS = ["neutral", "angry", "sad", "happy"]
RATE = 16000


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 speakers x 8 clips of 0.6-1.4 s: a tone whose pitch depends on the class, plus noise."""
    import soundfile

    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    rows = []
    for s in range(4):
        for k in range(8):
            label = k % 4
            seconds = 0.6 + 0.1 * k
            t = np.arange(int(seconds * RATE)) / RATE
            wave = 0.3 * np.sin(2 * np.pi * (150 + 120 * label + 10 * s) * t) + 0.02 * rng.standard_normal(len(t))
            name = f"spk{s}_{k}.wav"
            soundfile.write(root / name, wave.astype(np.float32), RATE)
            rows.append(Utterance(id=f"spk{s}_{k}", audio=name, label=LABELS[label], speaker=f"spk{s}",
                                  gender="MF"[s % 2], text="x", duration=seconds))
    manifest = root / "tones.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="ravdess", root=str(root), label_set="ravdess8"), rows)
    return manifest


@pytest.fixture(scope="session")
def tiny_group_norm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random HuBERT with a group-norm feature encoder and post-LN transformer (like hubert-base)."""
    pytest.importorskip("transformers")
    from tests.extract.conftest import _save_ssl

    return _save_ssl(tmp_path_factory.mktemp("adapt_hubert_group"), "hubert", "group", seed=11)


@pytest.fixture(scope="session")
def tiny_stable_layer_norm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random wav2vec2 with layer-norm feature encoder and pre-LN transformer (like the large models)."""
    pytest.importorskip("transformers")
    from tests.extract.conftest import _save_ssl

    return _save_ssl(tmp_path_factory.mktemp("adapt_w2v2_layer"), "wav2vec2", "layer", seed=12)
