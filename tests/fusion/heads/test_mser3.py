"""3M-SER head: shapes, paper defaults, padding invariance, min-max over valid frames, gradients, seeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser.fusion.blocks import padding_mask
from ser.fusion.heads import mser3
from tests.fusion.heads.headutil import assert_all_grads, assert_padding_invariant, assert_same_init, random_batch

PAPER_DIMS = {"text": 768, "audio": 128}  # BERT tokens, VGGish patches


@pytest.mark.parametrize("dims", [mser3.EXAMPLE_DIMS, PAPER_DIMS])
def test_output_shape(dims: dict[str, int]) -> None:
    head = mser3.build(dims, n_classes=4)
    assert head(random_batch(dims, [5, 3, 1], [2, 6, 4])).shape == (3, 4)
    assert head(random_batch(dims, [2], [1])).shape == (1, 4)


def test_paper_defaults() -> None:
    config = mser3.Mser3Config()
    assert (config.audio_norm, config.heads, config.dropout, config.hidden) == ("layer_norm", 8, 0.5, 64)
    assert mser3.INPUTS == {"text": "seq", "audio": "seq"}
    assert all(d % 8 == 0 for d in mser3.EXAMPLE_DIMS.values())
    head = mser3.build(PAPER_DIMS, n_classes=4)
    text_attention, fusion_attention = head.text_block.attention, head.fusion_block.attention
    assert (text_attention.embed_dim, text_attention.num_heads, text_attention.dropout) == (768, 8, 0.5)
    assert (fusion_attention.embed_dim, fusion_attention.num_heads, fusion_attention.head_dim) == (128, 8, 16)
    assert (head.text_block.linear.in_features, head.text_block.linear.out_features) == (768, 128)
    assert isinstance(head.audio_norm.layer_norm, nn.LayerNorm)
    dropout, hidden, act, out = head.classifier
    assert dropout.p == 0.5 and (hidden.in_features, hidden.out_features) == (128, 64)
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.01
    assert (out.in_features, out.out_features) == (64, 4)


@pytest.mark.parametrize("audio_norm", ["layer_norm", "min_max", "none"])
@pytest.mark.parametrize("grad", [False, True])  # no_grad takes MHA's fused fast path in eval mode
def test_padding_invariance(audio_norm: str, grad: bool) -> None:
    torch.manual_seed(0)
    head = mser3.build(mser3.EXAMPLE_DIMS, n_classes=4, audio_norm=audio_norm).eval()
    assert_padding_invariant(head, mser3.EXAMPLE_DIMS, grad=grad)


def test_padding_invariance_paper_dims() -> None:
    torch.manual_seed(0)
    head = mser3.build(PAPER_DIMS, n_classes=4, audio_norm="min_max").eval()
    assert_padding_invariant(head, PAPER_DIMS)


def test_min_max_uses_valid_frames_only() -> None:
    head = mser3.build(mser3.EXAMPLE_DIMS, n_classes=4, audio_norm="min_max")
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 6, 16, generator=gen)
    lengths = torch.tensor([4, 6])
    audio[0, 4] = 1e3  # padding far outside the valid range on both sides
    audio[0, 5] = -1e3
    out = head.audio_norm(audio, padding_mask(lengths, 6))
    valid = audio[0, :4]
    expected = (valid - valid.min()) / (valid.max() - valid.min())
    torch.testing.assert_close(out[0, :4], expected)
    assert out[0, :4].min() == 0 and out[0, :4].max() == 1
    assert (out[0, 4:] == 0).all()
    full = audio[1]
    torch.testing.assert_close(out[1], (full - full.min()) / (full.max() - full.min()))
    # Constant item: the eps floor keeps it finite (the original divided by zero).
    constant = head.audio_norm(torch.ones(1, 3, 16), padding_mask(torch.tensor([3]), 3))
    assert torch.isfinite(constant).all()


@pytest.mark.parametrize("audio_norm", ["layer_norm", "min_max", "none"])
def test_gradients_reach_every_parameter(audio_norm: str) -> None:
    head = mser3.build(mser3.EXAMPLE_DIMS, n_classes=3, audio_norm=audio_norm)
    assert_all_grads(head, mser3.EXAMPLE_DIMS, 3)


def test_same_seed_same_init() -> None:
    assert_same_init(lambda: mser3.build(mser3.EXAMPLE_DIMS, n_classes=4))


def test_unknown_override_raises_type_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        mser3.build(mser3.EXAMPLE_DIMS, n_classes=4, bogus=1)


def test_bad_choices_raise_value_error() -> None:
    with pytest.raises(ValueError, match="audio_norm"):
        mser3.build(mser3.EXAMPLE_DIMS, n_classes=4, audio_norm="zscore")
    with pytest.raises(ValueError, match="heads="):
        mser3.build({"text": 16, "audio": 12}, n_classes=4)
    with pytest.raises(ValueError, match="text and audio"):
        mser3.build({"text": 16}, n_classes=4)


def test_heads_override_allows_other_widths() -> None:
    head = mser3.build({"text": 16, "audio": 12}, n_classes=4, heads=4)
    assert head(random_batch({"text": 16, "audio": 12}, [3, 2], [2, 5])).shape == (2, 4)
