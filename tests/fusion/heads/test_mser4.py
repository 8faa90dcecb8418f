"""4M-SER head: shapes, defaults, pooling options, padding invariance, features, gradients, seeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser.fusion.heads import mser3, mser4
from tests.fusion.heads.headutil import (
    assert_all_grads,
    assert_padding_invariant,
    assert_poolings_differ,
    assert_same_init,
    random_batch,
)

VGGISH_DIMS = {"text": 768, "audio": 128}
SSL_DIMS = {"text": 768, "audio": 768}  # HuBERT / wav2vec 2.0 / WavLM base frames


@pytest.mark.parametrize("dims", [mser4.EXAMPLE_DIMS, VGGISH_DIMS, SSL_DIMS])
def test_output_and_feature_shapes(dims: dict[str, int]) -> None:
    head = mser4.build(dims, n_classes=4, linear_layers=(128, 64))
    logits, features = head.forward_features(random_batch(dims, [5, 3, 1], [2, 6, 4]))
    assert logits.shape == (3, 4)
    assert features.shape == (3, dims["audio"]) and head.feature_dim == dims["audio"]
    assert head(random_batch(dims, [2], [1])).shape == (1, 4)


def test_defaults() -> None:
    config = mser4.Mser4Config()
    assert (config.audio_norm, config.pooling, config.linear_layers) == ("layer_norm", "cls", (64,))
    assert (config.heads, config.dropout) == (8, 0.5)
    assert mser4.INPUTS == {"text": "seq", "audio": "seq"}
    head = mser4.build(VGGISH_DIMS, n_classes=4, linear_layers=[128, 64])  # a YAML list becomes a tuple
    linears = [m for m in head.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 128), (128, 64), (64, 4)]
    assert isinstance(head.classifier[0], nn.Dropout) and head.classifier[0].p == 0.5
    assert head.fusion_block.attention.num_heads == 8


def test_defaults_are_3m_ser() -> None:
    """Default 4M-SER (cls pooling, one 64-wide layer) is 3M-SER: same parameters, same logits."""
    torch.manual_seed(0)
    four = mser4.build(VGGISH_DIMS, n_classes=4).eval()
    torch.manual_seed(0)
    three = mser3.build(VGGISH_DIMS, n_classes=4).eval()
    inputs = random_batch(VGGISH_DIMS, [5, 3], [2, 6])
    torch.testing.assert_close(four(inputs), three(inputs))


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
@pytest.mark.parametrize("audio_norm", ["layer_norm", "min_max", "none"])
def test_padding_invariance(pooling: str, audio_norm: str) -> None:
    torch.manual_seed(0)
    head = mser4.build(mser4.EXAMPLE_DIMS, n_classes=4, pooling=pooling, audio_norm=audio_norm).eval()
    assert_padding_invariant(head, mser4.EXAMPLE_DIMS)
    assert_padding_invariant(lambda inputs: head.forward_features(inputs)[1], mser4.EXAMPLE_DIMS)
    assert_padding_invariant(head, mser4.EXAMPLE_DIMS, grad=True)


def test_padding_invariance_ssl_dims() -> None:
    torch.manual_seed(0)
    head = mser4.build(SSL_DIMS, n_classes=4, pooling="mean", linear_layers=(128, 64)).eval()
    assert_padding_invariant(head, SSL_DIMS)


def test_pooling_options_differ() -> None:
    assert_poolings_differ(mser4)


def test_max_pooling_ignores_padding() -> None:
    """The pooled max is the max over valid text and audio positions only."""
    torch.manual_seed(0)
    head = mser4.build(mser4.EXAMPLE_DIMS, n_classes=4, pooling="max").eval()
    inputs = random_batch(mser4.EXAMPLE_DIMS, [2, 6], [3, 7])
    with torch.no_grad():
        features = head.forward_features(inputs)[1]
        text = head.text_block(inputs["text"][:1, :2], torch.zeros(1, 2, dtype=torch.bool))
        audio = head.audio_norm(inputs["audio"][:1, :3], torch.zeros(1, 3, dtype=torch.bool))
        fused = head.fusion_block(torch.cat([text, audio], dim=1), torch.zeros(1, 5, dtype=torch.bool))
    torch.testing.assert_close(features[0], fused[0].amax(dim=0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_gradients_reach_every_parameter(pooling: str) -> None:
    head = mser4.build(mser4.EXAMPLE_DIMS, n_classes=3, pooling=pooling, linear_layers=(32, 16))
    assert_all_grads(head, mser4.EXAMPLE_DIMS, 3)


def test_same_seed_same_init() -> None:
    assert_same_init(lambda: mser4.build(mser4.EXAMPLE_DIMS, n_classes=4, linear_layers=(128, 64)))


def test_bad_overrides() -> None:
    with pytest.raises(TypeError, match="bogus"):
        mser4.build(mser4.EXAMPLE_DIMS, n_classes=4, bogus=1)
    with pytest.raises(ValueError, match="pooling"):
        mser4.build(mser4.EXAMPLE_DIMS, n_classes=4, pooling="min")
    with pytest.raises(ValueError, match="audio_norm"):
        mser4.build(mser4.EXAMPLE_DIMS, n_classes=4, audio_norm="zscore")
    with pytest.raises(ValueError, match="heads="):
        mser4.build({"text": 768, "audio": 100}, n_classes=4)
