"""The tone corpus and tiny random upstreams saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest


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
