"""Log-mel transformer head: shapes, eval padding invariance, gradients, SpecAugment."""

from __future__ import annotations

import math

import pytest
import torch

from ser.fusion.heads import audio_transformer
from ser.fusion.heads.audio_transformer import build, sinusoidal_positions
from tests.fusion.heads.headutil import N_MELS, assert_items_match_alone, log_mel_batch


def test_contract_and_shapes() -> None:
    assert audio_transformer.INPUTS == {"audio": "seq"} and audio_transformer.EXAMPLE_DIMS == {"audio": N_MELS}
    torch.manual_seed(0)
    head = build(audio_transformer.EXAMPLE_DIMS, 4).eval()
    assert len(head.encoder.layers) == 4
    layer = head.encoder.layers[0]
    assert layer.self_attn.embed_dim == 128 and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 512 and not layer.norm_first
    inputs = log_mel_batch([48, 31, 1])
    logits, features = head.forward_features(inputs)
    assert logits.shape == (3, 4) and features.shape == (3, head.feature_dim) == (3, 128)
    assert torch.equal(head(inputs), logits) and torch.isfinite(logits).all()


def test_sinusoidal_positions() -> None:
    table = sinusoidal_positions(50, 8)
    assert table.shape == (50, 8)
    assert torch.equal(table[0], torch.tensor([0.0, 1.0] * 4))
    torch.testing.assert_close(table[3, 2], torch.tensor(math.sin(3 / 10000 ** (2 / 8))))
    torch.testing.assert_close(table[3, 3], torch.tensor(math.cos(3 / 10000 ** (2 / 8))))


def test_padding_invariance_eval() -> None:
    torch.manual_seed(1)
    head = build(audio_transformer.EXAMPLE_DIMS, 4).eval()
    inputs = log_mel_batch([37, 80, 52, 1], pad=55.0)  # garbage padding: it must not matter either
    assert_items_match_alone(head, inputs)


def test_rejects() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        build(audio_transformer.EXAMPLE_DIMS, 4, n_mels=3)
    with pytest.raises(ValueError, match="audio"):
        build({"audio": 64, "text": 8}, 4)
