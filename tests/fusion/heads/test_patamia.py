"""Patamia head: shapes for every subset, paper defaults, mocap masking, gradients, overrides."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.heads import patamia
from tests.fusion.heads.headutil import assert_every_parameter_learns

PAPER_DIMS = {"text": 768, "audio": 768, "mocap": 189}


def batch(dims: dict[str, int], lengths: list[int], pad_value: float = 0.0) -> dict[str, torch.Tensor]:
    """Pooled text/audio vectors and zero-padded (here: `pad_value`-padded) mocap grids with lengths."""
    n = len(lengths)
    inputs: dict[str, torch.Tensor] = {}
    for m in ("text", "audio"):
        if m in dims:
            inputs[m] = torch.randn(n, dims[m])
    if "mocap" in dims:
        grid = torch.randn(n, max(lengths), dims["mocap"])
        for i, length in enumerate(lengths):
            grid[i, length:] = pad_value
        inputs["mocap"] = grid
        inputs["mocap_lengths"] = torch.tensor(lengths, dtype=torch.long)
    return inputs


def subsets(dims: dict[str, int]) -> list[dict[str, int]]:
    names = sorted(dims)
    pairs = [{a: dims[a], b: dims[b]} for i, a in enumerate(names) for b in names[i + 1 :]]
    return [*pairs, dict(dims)]


@pytest.mark.parametrize("dims", subsets(patamia.EXAMPLE_DIMS), ids=lambda d: "+".join(sorted(d)))
def test_output_shape_every_subset(dims: dict[str, int]) -> None:
    head = patamia.build(dims, n_classes=4)
    logits, features = head.forward_features(batch(dims, [7, 3, 5]))
    assert logits.shape == (3, 4)
    assert features.shape == (3, head.feature_dim) == (3, 128)


def test_output_shape_paper_dims() -> None:
    head = patamia.build(PAPER_DIMS, n_classes=4)
    assert head.branches["mocap"].proj.in_features == 75 * 13 * 12  # 200 x 189 after four stride-2 convs
    assert head.fusion[0].in_features == 3 * 128
    assert head(batch(PAPER_DIMS, [200, 200])).shape == (2, 4)


def test_paper_defaults_2023() -> None:
    config = patamia.PatamiaConfig()
    assert config.branch_dim == 128
    assert config.text_dropout == 0.5
    assert config.text_activation == "relu"
    assert config.audio_activation == config.mocap_activation == "none"
    assert config.mocap_channels == (16, 32, 64, 75)
    assert config.mocap_frames == 200
    assert config.fusion_hidden == 128
    assert patamia.INPUTS == {"text": "pooled?", "audio": "pooled?", "mocap": "seq?"}


def test_2021_configuration_builds() -> None:
    head = patamia.build(
        patamia.EXAMPLE_DIMS,
        n_classes=4,
        branch_dim=256,
        text_activation="tanh",
        fusion_hidden=256,
        mocap_channels=(32, 64, 64, 128, 128),
        mocap_dropout=0.2,
    )
    assert any(isinstance(m, torch.nn.Tanh) for m in head.branches["text"])
    assert head(batch(patamia.EXAMPLE_DIMS, [4, 9])).shape == (2, 4)


def test_logits_are_not_softmaxed() -> None:
    head = patamia.build(patamia.EXAMPLE_DIMS, n_classes=4).eval()
    with torch.no_grad():
        logits = head(batch(patamia.EXAMPLE_DIMS, [3, 4]))
    assert not torch.allclose(logits.sum(dim=-1), torch.ones(2))
    assert not any(isinstance(m, torch.nn.Softmax) for m in head.modules())


@pytest.mark.parametrize("dims", [patamia.EXAMPLE_DIMS, {"audio": 6, "mocap": 5}], ids=["all", "audio+mocap"])
def test_padding_invariance(dims: dict[str, int]) -> None:
    torch.manual_seed(0)
    head = patamia.build(dims, n_classes=4).eval()
    inputs = batch(dims, [4, 11, 8], pad_value=9.0)
    alone = {k: v[:1] for k, v in inputs.items()}
    alone["mocap"] = alone["mocap"][:, :4]
    with torch.no_grad():
        torch.testing.assert_close(head(inputs)[:1], head(alone), atol=1e-5, rtol=1e-6)


def test_padding_past_mocap_frames_is_cut_but_frames_are_not() -> None:
    torch.manual_seed(0)
    dims = {"audio": 6, "mocap": 5}
    head = patamia.build(dims, n_classes=4, mocap_frames=10).eval()
    inputs = batch(dims, [10, 6, 14], pad_value=3.0)
    short = {k: v[:2] for k, v in inputs.items()}
    short["mocap"] = short["mocap"][:, :10]
    with torch.no_grad():
        with pytest.raises(ValueError, match="mocap_frames"):
            head(inputs)  # item 2 has 14 > 10 real frames
        padded = dict(short, mocap=torch.cat([short["mocap"], torch.full((2, 5, 5), 3.0)], dim=1))
        torch.testing.assert_close(head(padded), head(short), atol=1e-5, rtol=1e-6)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    head = patamia.build(patamia.EXAMPLE_DIMS, n_classes=4).train()
    head(batch(patamia.EXAMPLE_DIMS, [7, 3, 5, 6])).sum().backward()
    assert_every_parameter_learns(head)


@pytest.mark.parametrize("dims", [{}, {"text": 8}, {"mocap": 5}])
def test_fewer_than_two_modalities_is_value_error(dims: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least two"):
        patamia.build(dims, n_classes=4)


def test_unknown_modality_and_activation_are_value_errors() -> None:
    with pytest.raises(ValueError, match="video"):
        patamia.build({"text": 8, "video": 3}, n_classes=4)
    with pytest.raises(ValueError, match="activation"):
        patamia.build(patamia.EXAMPLE_DIMS, n_classes=4, text_activation="gelu")


def test_unknown_override_is_type_error() -> None:
    with pytest.raises(TypeError, match="hidden"):
        patamia.build(patamia.EXAMPLE_DIMS, n_classes=4, hidden=(3,))


def test_deterministic_under_seed() -> None:
    torch.manual_seed(7)
    first = patamia.build(PAPER_DIMS, n_classes=4)
    torch.manual_seed(7)
    second = patamia.build(PAPER_DIMS, n_classes=4)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
