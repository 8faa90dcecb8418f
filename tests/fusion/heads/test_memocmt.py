"""MemoCMT head: shapes, paper defaults, no dead layers, pooling options, padding invariance, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser.fusion.heads import memocmt
from tests.fusion.heads.headutil import (
    assert_all_grads,
    assert_padding_invariant,
    assert_poolings_differ,
    assert_same_init,
    random_batch,
)

PAPER_DIMS = {"text": 768, "audio": 768}  # BERT tokens, HuBERT base frames
VGGISH_DIMS = {"text": 768, "audio": 128}  # unequal widths: both are projected to fusion_dim


@pytest.mark.parametrize("dims", [memocmt.EXAMPLE_DIMS, PAPER_DIMS, VGGISH_DIMS])
def test_output_and_feature_shapes(dims: dict[str, int]) -> None:
    head = memocmt.build(dims, n_classes=4)
    logits, features = head.forward_features(random_batch(dims, [5, 3, 1], [2, 6, 4]))
    assert logits.shape == (3, 4)
    assert features.shape == (3, 768) and head.feature_dim == 768
    assert head(random_batch(dims, [2], [1])).shape == (1, 4)
    small = memocmt.build(dims, n_classes=5, fusion_dim=32, linear_layers=[16])
    assert small.forward_features(random_batch(dims, [3], [4]))[1].shape == (1, 32)


def test_paper_defaults_and_no_dead_layers() -> None:
    config = memocmt.MemoCmtConfig()
    assert (config.fusion_dim, config.heads, config.dropout) == (768, 8, 0.05)
    assert (config.pooling, config.linear_layers) == ("min", (128,))
    assert memocmt.INPUTS == {"text": "seq", "audio": "seq"}
    head = memocmt.build(PAPER_DIMS, n_classes=4)
    assert isinstance(head.text_in, nn.Identity) and isinstance(head.audio_in, nn.Identity)
    for attention in (head.text_attention, head.audio_attention):
        assert (attention.embed_dim, attention.num_heads, attention.dropout) == (768, 8, 0.05)
    assert not hasattr(head, "fusion_attention") and not hasattr(head, "fusion_linear")
    kinds = [type(m) for m in head.classifier]
    assert kinds == [nn.Dropout, nn.Linear, nn.LeakyReLU, nn.Dropout, nn.Linear]
    assert (head.classifier[1].in_features, head.classifier[1].out_features) == (768, 128)
    assert head.classifier[2].negative_slope == 0.01
    # Two cross-attentions (in-projection 3·D² + 3·D, out-projection D² + D), two Linear D->D, two
    # LayerNorms, Linear 768->128, Linear 128->4. Nothing else: the dead fusion layers are not built.
    d = 768
    expected = 2 * (4 * d * d + 4 * d) + 2 * (d * d + d) + 2 * (2 * d) + (d * 128 + 128) + (128 * 4 + 4)
    assert sum(p.numel() for p in head.parameters()) == expected


def test_unequal_widths_are_projected() -> None:
    head = memocmt.build(VGGISH_DIMS, n_classes=4)
    assert (head.text_in.in_features, head.text_in.out_features) == (768, 768)
    assert (head.audio_in.in_features, head.audio_in.out_features) == (128, 768)
    assert head.text_attention.embed_dim == 768


@pytest.mark.parametrize("pooling", ["min", "mean", "max", "first"])
@pytest.mark.parametrize("dims", [memocmt.EXAMPLE_DIMS, {"text": 16, "audio": 24}])
def test_padding_invariance(pooling: str, dims: dict[str, int]) -> None:
    torch.manual_seed(0)
    head = memocmt.build(dims, n_classes=4, pooling=pooling, fusion_dim=32).eval()
    assert_padding_invariant(head, dims)
    assert_padding_invariant(lambda inputs: head.forward_features(inputs)[1], dims)
    assert_padding_invariant(head, dims, grad=True)


def test_padding_invariance_paper_dims() -> None:
    torch.manual_seed(0)
    head = memocmt.build(PAPER_DIMS, n_classes=4).eval()
    assert_padding_invariant(head, PAPER_DIMS)


def test_pooling_uses_valid_query_positions() -> None:
    """min pooling equals the min over the valid audio-query rows and valid text-query rows of one item."""
    torch.manual_seed(0)
    dims = memocmt.EXAMPLE_DIMS
    head = memocmt.build(dims, n_classes=4, fusion_dim=32).eval()
    inputs = random_batch(dims, [2, 6], [3, 7])
    with torch.no_grad():
        features = head.forward_features(inputs)[1]
        text, audio = inputs["text"][:1, :2], inputs["audio"][:1, :3]
        text_side = head.text_norm(head.text_linear(head.text_attention(audio, text, text)[0]))
        audio_side = head.audio_norm(head.audio_linear(head.audio_attention(text, audio, audio)[0]))
    expected = torch.cat([text_side, audio_side], dim=1)[0].amin(dim=0)
    torch.testing.assert_close(features[0], expected, atol=1e-5, rtol=0)


def test_pooling_options_differ() -> None:
    assert_poolings_differ(memocmt)


@pytest.mark.parametrize("pooling", ["min", "mean", "max", "first"])
@pytest.mark.parametrize("dims", [memocmt.EXAMPLE_DIMS, {"text": 16, "audio": 24}])
def test_gradients_reach_every_parameter(pooling: str, dims: dict[str, int]) -> None:
    head = memocmt.build(dims, n_classes=3, pooling=pooling, fusion_dim=32, linear_layers=(16, 8))
    # "first" (the original's "cls") reads one text-side position only: the audio-side block is off the
    # output's path and never trains (documented in the head).
    unreached = ("audio_attention.", "audio_linear.", "audio_norm.") if pooling == "first" else ()
    assert_all_grads(head, dims, 3, unreached=unreached)


def test_same_seed_same_init() -> None:
    assert_same_init(lambda: memocmt.build({"text": 16, "audio": 24}, n_classes=4))


def test_bad_overrides() -> None:
    with pytest.raises(TypeError, match="bogus"):
        memocmt.build(memocmt.EXAMPLE_DIMS, n_classes=4, bogus=1)
    with pytest.raises(ValueError, match="pooling"):
        memocmt.build(memocmt.EXAMPLE_DIMS, n_classes=4, pooling="cls")
    with pytest.raises(ValueError, match="heads="):
        memocmt.build({"text": 12, "audio": 12}, n_classes=4)
    with pytest.raises(ValueError, match="fusion_dim"):
        memocmt.build({"text": 16, "audio": 24}, n_classes=4, fusion_dim=36)
