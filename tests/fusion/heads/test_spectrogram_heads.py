"""What the four log-mel heads share: SpecAugment acts only in training, and every weight learns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser.fusion.heads import head_module
from tests.fusion.test_head_contract import make_inputs

SMALL = {"resnet18": {"widths": (8, 16, 32, 64), "hidden": 16}}
"""Narrow ResNet-18 (same depth): masking does not depend on width, and it keeps these tests fast."""
HEADS = ["resnet18", "cnn_bilstm", "audio_transformer", "xattn_patch"]


def build(name: str, n_classes: int, **options: object) -> nn.Module:
    module = head_module(name)
    return module.build(dict(module.EXAMPLE_DIMS), n_classes, **SMALL.get(name, {}), **options)


@pytest.mark.parametrize("name", HEADS)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(2)
    head = build(name, 3, specaugment=False).train()
    nn.functional.cross_entropy(head(make_inputs(name, [40, 28, 32])), torch.tensor([0, 1, 2])).backward()
    for param_name, param in head.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", HEADS)
def test_specaugment_only_in_training(name: str) -> None:
    torch.manual_seed(3)
    with_aug = build(name, 4, dropout=0.0)
    without = build(name, 4, dropout=0.0, specaugment=False)
    without.load_state_dict(with_aug.state_dict())
    inputs = make_inputs(name, [60, 44])
    with torch.no_grad():
        torch.testing.assert_close(with_aug.eval()(inputs), without.eval()(inputs))
        with_aug.train()
        outs = []
        for seed in (0, 0, 1, 2):
            torch.manual_seed(seed)
            outs.append(with_aug(inputs))
    torch.testing.assert_close(outs[0], outs[1])  # reproducible under a seed
    assert any(not torch.allclose(outs[0], other) for other in outs[2:])
