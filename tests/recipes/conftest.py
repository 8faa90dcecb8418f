"""The tone corpus and a tiny random HuBERT saved with save_pretrained, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random HuBERT (group-norm feature encoder, 2 transformer layers) in a save_pretrained folder."""
    pytest.importorskip("transformers")
    from tests.extract.conftest import _save_ssl

    return _save_ssl(tmp_path_factory.mktemp("recipe-hubert"), "hubert", "group", seed=7)
