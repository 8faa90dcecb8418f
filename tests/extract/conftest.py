"""Tiny random speech encoders saved with ``save_pretrained`` once per session (real loading code, no network).

Every SSL model has hidden size 32, 2 transformer layers (3 hidden states), and a 7-layer feature
encoder of 16 channels with the real kernel/stride defaults, so its receptive field is the real
400 samples and its frame rate the real 50 Hz. Each folder also holds the feature-extractor config
the extractor reads (``do_normalize``, sampling rate).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

HIDDEN = 32
LAYERS = 2
SSL_SIZES: dict[str, object] = {
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "conv_dim": (16,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def _save_ssl(folder: Path, family: str, norm: str, seed: int) -> Path:
    """A random HuBERT / wav2vec2 / WavLM model with a group- or layer-norm feature encoder."""
    import torch
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    classes = {
        "hubert": (HubertConfig, HubertModel),
        "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
        "wavlm": (WavLMConfig, WavLMModel),
    }
    config_cls, model_cls = classes[family]
    layer_norm = norm == "layer"
    config = config_cls(feat_extract_norm=norm, do_stable_layer_norm=layer_norm, **SSL_SIZES)
    assert config.conv_kernel == (10, 3, 3, 3, 3, 2, 2) and config.conv_stride == (5, 2, 2, 2, 2, 2, 2)
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(folder)
    # what the real checkpoints ship: large (layer-norm) models return attention masks, base ones do not
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer_norm).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hubert_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return _save_ssl(tmp_path_factory.mktemp("hubert_layer"), "hubert", "layer", seed=0)


@pytest.fixture(scope="session")
def tiny_hubert_group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return _save_ssl(tmp_path_factory.mktemp("hubert_group"), "hubert", "group", seed=1)


@pytest.fixture(scope="session")
def tiny_wav2vec2_group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return _save_ssl(tmp_path_factory.mktemp("wav2vec2_group"), "wav2vec2", "group", seed=2)


@pytest.fixture(scope="session")
def tiny_wavlm_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return _save_ssl(tmp_path_factory.mktemp("wavlm_layer"), "wavlm", "layer", seed=3)


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Whisper model (d_model 32, 2 encoder layers, 80 mel bins) and its feature extractor."""
    pytest.importorskip("transformers")
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = tmp_path_factory.mktemp("whisper")
    config = WhisperConfig(
        vocab_size=64,
        d_model=HIDDEN,
        encoder_layers=LAYERS,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=4,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(4)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Run tiny models on one intra-op thread: on a busy 2-core machine, thread spinning costs 30x the CPU time."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
