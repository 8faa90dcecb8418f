"""CNN + BiLSTM log-mel head: shapes, padding invariance (eval and train), gradients, SpecAugment."""

from __future__ import annotations

import copy

import pytest
import torch

from ser.fusion.heads import cnn_bilstm
from ser.fusion.heads.cnn_bilstm import build
from tests.fusion.heads.headutil import N_MELS, alone, assert_items_match_alone, log_mel_batch


def test_contract_and_shapes() -> None:
    assert cnn_bilstm.INPUTS == {"audio": "seq"} and cnn_bilstm.EXAMPLE_DIMS == {"audio": N_MELS}
    torch.manual_seed(0)
    head = build(cnn_bilstm.EXAMPLE_DIMS, 4).eval()
    assert [block.conv.out_channels for block in head.blocks] == [32, 64, 128]
    assert head.lstm.input_size == 128 * 8 and head.lstm.hidden_size == 128 and head.lstm.bidirectional
    inputs = log_mel_batch([48, 31, 1])
    logits, features = head.forward_features(inputs)
    assert logits.shape == (3, 4) and features.shape == (3, head.feature_dim) == (3, 256)
    assert torch.equal(head(inputs), logits) and torch.isfinite(logits).all()


def test_padding_invariance_eval() -> None:
    torch.manual_seed(1)
    head = build(cnn_bilstm.EXAMPLE_DIMS, 4).eval()
    inputs = log_mel_batch([37, 70, 52], pad=55.0)  # garbage padding: it must not matter either
    assert_items_match_alone(head, inputs)


def test_padding_invariance_train_mode() -> None:
    """Batch-norm training statistics use valid frames only: one item padded (batch of 1) == unpadded."""
    torch.manual_seed(2)
    head = build(cnn_bilstm.EXAMPLE_DIMS, 4, dropout=0.0, specaugment=False).train()
    twin = copy.deepcopy(head)
    inputs = log_mel_batch([33], t=64, pad=-3.0)
    torch.testing.assert_close(head(inputs), twin(alone(inputs, 0)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head.blocks[0].bn.running_var, twin.blocks[0].bn.running_var)


def test_rejects() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        build(cnn_bilstm.EXAMPLE_DIMS, 4, hidden=3)
    with pytest.raises(ValueError, match="audio"):
        build({"text": 8}, 4)
    with pytest.raises(ValueError, match="halve"):
        build({"audio": 4}, 4)
