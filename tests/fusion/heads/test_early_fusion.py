"""Early-fusion transformer head: shapes, original defaults, token layouts, gradients, overrides."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.heads import early_fusion
from tests.fusion.heads.headutil import assert_every_parameter_learns, pooled_batch

PAPER_DIMS = {"text": 768, "audio": 768}


@pytest.mark.parametrize("tokens", ["per_modality", "concat"])
@pytest.mark.parametrize(
    "dims", [early_fusion.EXAMPLE_DIMS, PAPER_DIMS, {"audio": 12}], ids=["example", "paper", "audio-only"]
)
def test_output_shape(dims: dict[str, int], tokens: str) -> None:
    head = early_fusion.build(dims, n_classes=4, tokens=tokens)
    logits, features = head.forward_features(pooled_batch(dims, 3))
    assert logits.shape == (3, 4)
    assert features.shape == (3, head.feature_dim) == (3, 256)


def test_original_defaults() -> None:
    config = early_fusion.EarlyFusionConfig()
    assert (config.n_layers, config.d_model, config.n_heads, config.ff_dim) == (4, 256, 4, 1024)
    assert config.dropout == 0.1
    assert early_fusion.INPUTS == {"audio": "pooled?", "text": "pooled?"}
    head = early_fusion.build(PAPER_DIMS, n_classes=4)
    layers = head.encoder.layers
    assert len(layers) == 4
    assert layers[0].linear1.out_features == 1024
    assert layers[0].self_attn.num_heads == 4
    assert layers[0].norm_first is False
    assert layers[0].activation is torch.nn.functional.gelu
    assert torch.equal(head.cls, torch.zeros(1, 1, 256))


def test_token_counts_concat_vs_per_modality() -> None:
    inputs = pooled_batch(PAPER_DIMS, 2)
    per_modality = early_fusion.build(PAPER_DIMS, n_classes=4)
    concat = early_fusion.build(PAPER_DIMS, n_classes=4, tokens="concat")
    assert per_modality.embed(inputs).shape == (2, 3, 256) and per_modality.n_tokens == 3  # CLS, text, audio
    assert concat.embed(inputs).shape == (2, 2, 256) and concat.n_tokens == 2  # CLS, [text || audio]
    assert concat.proj.in_features == 1536
    assert all(p.in_features == 768 for p in per_modality.proj.values())
    for tokens in ("per_modality", "concat"):
        assert early_fusion.build({"text": 8}, n_classes=4, tokens=tokens).n_tokens == 2


@pytest.mark.parametrize("tokens", ["per_modality", "concat"])
def test_gradients_reach_every_parameter(tokens: str) -> None:
    torch.manual_seed(0)
    head = early_fusion.build(early_fusion.EXAMPLE_DIMS, n_classes=4, tokens=tokens).train()
    head(pooled_batch(early_fusion.EXAMPLE_DIMS, 4)).sum().backward()
    assert_every_parameter_learns(head)


def test_batch_items_are_independent() -> None:
    torch.manual_seed(0)
    head = early_fusion.build(early_fusion.EXAMPLE_DIMS, n_classes=4).eval()
    inputs = pooled_batch(early_fusion.EXAMPLE_DIMS, 3)
    with torch.no_grad():
        torch.testing.assert_close(head(inputs)[:1], head({k: v[:1] for k, v in inputs.items()}), atol=1e-5, rtol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="n_blocks"):
        early_fusion.build(early_fusion.EXAMPLE_DIMS, n_classes=4, n_blocks=2)
    with pytest.raises(ValueError, match="tokens"):
        early_fusion.build(early_fusion.EXAMPLE_DIMS, n_classes=4, tokens="interleave")
    with pytest.raises(ValueError, match="at least one"):
        early_fusion.build({}, n_classes=4)
    with pytest.raises(ValueError, match="mocap"):
        early_fusion.build({"text": 8, "mocap": 5}, n_classes=4)


def test_deterministic_under_seed() -> None:
    torch.manual_seed(7)
    first = early_fusion.build(PAPER_DIMS, n_classes=4)
    torch.manual_seed(7)
    second = early_fusion.build(PAPER_DIMS, n_classes=4)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
