"""SER-Fuse head: shapes, paper defaults, linearity, gradients, overrides, determinism."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.heads import serfuse
from tests.fusion.heads.headutil import assert_every_parameter_learns, pooled_batch

PAPER_DIMS = {"text": 768, "audio": 192}


@pytest.mark.parametrize("dims", [serfuse.EXAMPLE_DIMS, PAPER_DIMS])
def test_output_shape(dims: dict[str, int]) -> None:
    head = serfuse.build(dims, n_classes=4)
    logits, features = head.forward_features(pooled_batch(dims, 3))
    assert logits.shape == (3, 4)
    assert features.shape == (3, head.feature_dim) == (3, 64)


def test_paper_defaults() -> None:
    config = serfuse.SerFuseConfig()
    assert config.hidden == (256, 64)
    assert config.dropout == 0.2
    assert config.nonlinear is False
    assert serfuse.INPUTS == {"text": "pooled", "audio": "pooled"}
    head = serfuse.build(PAPER_DIMS, n_classes=4)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(960, 256), (256, 64), (64, 4)]
    assert not any(isinstance(m, torch.nn.ReLU) for m in head.modules())


def test_default_head_is_linear_and_nonlinear_option_is_not() -> None:
    torch.manual_seed(0)
    inputs_a, inputs_b = pooled_batch(serfuse.EXAMPLE_DIMS, 2), pooled_batch(serfuse.EXAMPLE_DIMS, 2)
    summed = {k: inputs_a[k] + inputs_b[k] for k in inputs_a}
    zero = {k: torch.zeros_like(v) for k, v in inputs_a.items()}
    linear = serfuse.build(serfuse.EXAMPLE_DIMS, n_classes=3).eval()
    with torch.no_grad():  # affine: f(a + b) = f(a) + f(b) - f(0)
        torch.testing.assert_close(linear(summed), linear(inputs_a) + linear(inputs_b) - linear(zero))
    nonlinear = serfuse.build(serfuse.EXAMPLE_DIMS, n_classes=3, nonlinear=True)
    assert sum(isinstance(m, torch.nn.ReLU) for m in nonlinear.modules()) == 2


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    head = serfuse.build(serfuse.EXAMPLE_DIMS, n_classes=4).train()
    head(pooled_batch(serfuse.EXAMPLE_DIMS, 4)).sum().backward()
    assert_every_parameter_learns(head)


def test_unknown_override_is_type_error() -> None:
    with pytest.raises(TypeError, match="d_model"):
        serfuse.build(serfuse.EXAMPLE_DIMS, n_classes=4, d_model=3)


def test_missing_modality_is_value_error() -> None:
    with pytest.raises(ValueError, match="text and audio"):
        serfuse.build({"audio": 6}, n_classes=4)


def test_deterministic_under_seed() -> None:
    torch.manual_seed(7)
    first = serfuse.build(PAPER_DIMS, n_classes=4)
    torch.manual_seed(7)
    second = serfuse.build(PAPER_DIMS, n_classes=4)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
