"""ResNet-18 log-mel head: shapes, padding invariance (eval and train), masked batch norm, gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ser.fusion.blocks import MaskedBatchNorm2d, conv_out_lengths
from ser.fusion.heads import resnet18
from ser.fusion.heads.resnet18 import build
from tests.fusion.heads.headutil import N_MELS, alone, assert_items_match_alone, log_mel_batch

# Same depth and layout as ResNet-18, narrow channels: the masking logic is width-independent, and the
# full-width network (11 M parameters) is exercised only by the shape and eval-invariance tests.
NARROW = {"widths": (8, 16, 32, 64), "hidden": 16}


def test_contract_and_shapes() -> None:
    assert resnet18.INPUTS == {"audio": "seq"} and resnet18.EXAMPLE_DIMS == {"audio": N_MELS}
    torch.manual_seed(0)
    head = build(resnet18.EXAMPLE_DIMS, 4).eval()
    n_blocks = sum(isinstance(m, resnet18._BasicBlock) for m in head.modules())
    n_convs = sum(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in head.modules())
    assert (n_blocks, n_convs) == (8, 17)  # 1 stem conv + 8 blocks x 2 convs (+ 3 projection shortcuts)
    assert head.conv1.in_channels == 1 and head.conv1.kernel_size == (7, 7) and head.conv1.stride == (2, 2)
    assert head.classifier[0].in_features == 512 and head.classifier[0].out_features == 128
    assert head.dropout.p == 0.3
    inputs = log_mel_batch([48, 31, 5])
    logits, features = head.forward_features(inputs)
    assert logits.shape == (3, 4) and features.shape == (3, head.feature_dim) == (3, 128)
    assert torch.equal(head(inputs), logits)
    assert torch.isfinite(logits).all()
    # torchvision's resnet18 has 11 689 512 parameters: minus fc (513 000), conv1 (9 408) and bn1 (128)
    assert sum(p.numel() for p in head.blocks.parameters()) == 11_166_976


def test_conv_out_lengths_match_pytorch() -> None:
    for length in range(1, 30):
        x = torch.zeros(1, 1, 4, length)
        for kernel, stride, padding in [(7, 2, 3), (3, 2, 1), (3, 1, 1), (1, 2, 0)]:
            expected = nn.Conv2d(1, 1, kernel, stride, padding)(x).shape[-1]
            assert int(conv_out_lengths(torch.tensor([length]), kernel, stride, padding)) == expected


def test_padding_invariance_eval() -> None:
    torch.manual_seed(1)
    head = build(resnet18.EXAMPLE_DIMS, 4).eval()
    inputs = log_mel_batch([37, 61], pad=55.0)  # garbage padding: it must not matter either
    assert_items_match_alone(head, inputs, tolerance=1e-4)


def test_padding_invariance_train_mode_batch_norm_statistics() -> None:
    """Training statistics use valid frames only: one item padded (batch of 1) == unpadded."""
    torch.manual_seed(2)
    head = build(resnet18.EXAMPLE_DIMS, 4, dropout=0.0, specaugment=False, **NARROW).train()
    twin = copy.deepcopy(head)
    inputs = log_mel_batch([33], t=70, pad=9.0)
    torch.testing.assert_close(head(inputs), twin(alone(inputs, 0)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(head.bn1.running_mean, twin.bn1.running_mean)
    torch.testing.assert_close(head.blocks[-1].bn2.running_var, twin.blocks[-1].bn2.running_var)


def test_masked_batch_norm_equals_batch_norm_without_padding() -> None:
    torch.manual_seed(3)
    x = torch.randn(3, 5, 4, 9) * 2 + 1
    plain, masked = nn.BatchNorm2d(5), MaskedBatchNorm2d(5)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-1, 1)
    masked.load_state_dict(plain.state_dict())
    valid = torch.ones(3, 9, dtype=torch.bool)
    for _ in range(2):
        torch.testing.assert_close(masked(x, valid), plain(x))
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    assert int(masked.num_batches_tracked) == int(plain.num_batches_tracked) == 2
    masked.eval()
    plain.eval()
    torch.testing.assert_close(masked(x, valid), plain(x))
    # with padding: statistics of the valid frames only
    valid[1, 4:] = False
    masked.train()
    y = masked(x, valid)
    kept = torch.cat([x[0], x[1, :, :, :4], x[2]], dim=-1)  # (C, F, valid frames)
    mean, var = kept.mean(dim=(1, 2)), kept.var(dim=(1, 2), unbiased=False)
    expected = (x[1, :, :, :4] - mean[:, None, None]) / torch.sqrt(var[:, None, None] + masked.eps)
    expected = expected * masked.weight[:, None, None] + masked.bias[:, None, None]
    torch.testing.assert_close(y[1, :, :, :4], expected)


def test_small_stage_config_and_rejects() -> None:
    head = build(resnet18.EXAMPLE_DIMS, 2, blocks=(1, 1), widths=(8, 16), hidden=8).eval()
    assert head(log_mel_batch([20, 9])).shape == (2, 2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        build(resnet18.EXAMPLE_DIMS, 4, n_layers=3)
    with pytest.raises(ValueError, match="audio"):
        build({"audio": 64, "text": 8}, 4)
