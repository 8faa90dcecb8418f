"""The tone corpus and a tiny random HuBERT saved with save_pretrained, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.tones import write_tone_corpus


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 speakers (spk0..spk3) x 8 tone clips, labels of ravdess8; returns the manifest."""
    return write_tone_corpus(tmp_path_factory.mktemp("recipe-tones"))


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random HuBERT (group-norm feature encoder, 2 transformer layers) in a save_pretrained folder."""
    pytest.importorskip("transformers")
    from tests.extract.conftest import _save_ssl

    return _save_ssl(tmp_path_factory.mktemp("recipe-hubert"), "hubert", "group", seed=7)
