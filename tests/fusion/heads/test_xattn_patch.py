"""Patch cross-attention head: patching, shapes, eval padding invariance, gradients, SpecAugment."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.heads import xattn_patch
from ser.fusion.heads.xattn_patch import build
from tests.fusion.heads.headutil import N_MELS, assert_items_match_alone, log_mel_batch

DIMS = xattn_patch.EXAMPLE_DIMS


def batch(lengths: list[int], pad: float = 0.0) -> dict[str, torch.Tensor]:
    """Log-mel-like frames padded with ``pad`` to the longest item (:func:`log_mel_batch`), and text vectors."""
    return {**log_mel_batch(lengths, pad), "text": torch.randn(len(lengths), DIMS["text"])}


def test_contract_and_shapes() -> None:
    assert xattn_patch.INPUTS == {"audio": "seq", "text": "pooled"} and DIMS == {"audio": N_MELS, "text": 16}
    torch.manual_seed(0)
    head = build(DIMS, 4).eval()
    assert head.patch_embed.in_features == 256 and head.patch_embed.out_features == 256
    assert head.positions.shape == (512, 256) and len(head.layers) == 2
    assert head.layers[0].attn.num_heads == 4
    inputs = batch([48, 31, 7, 2])  # the last item is shorter than one patch
    logits, features = head.forward_features(inputs)
    assert logits.shape == (4, 4) and features.shape == (4, head.feature_dim) == (4, 256)
    assert torch.equal(head(inputs), logits) and torch.isfinite(logits).all()


def test_trailing_frames_beyond_whole_patches_are_ignored() -> None:
    torch.manual_seed(1)
    head = build(DIMS, 4).eval()
    inputs = batch([43])
    trimmed = {**inputs, "audio": inputs["audio"][:, :40], "audio_lengths": torch.tensor([40])}
    changed = {**inputs, "audio": inputs["audio"].clone()}
    changed["audio"][:, 40:] = 99.0
    with torch.no_grad():
        torch.testing.assert_close(head(inputs), head(trimmed))
        torch.testing.assert_close(head(inputs), head(changed))


def test_patch_layout_is_four_consecutive_frames() -> None:
    """Changing one frame changes exactly the patch holding it (the first layer's queries)."""
    torch.manual_seed(2)
    head = build(DIMS, 4).eval()
    inputs = batch([40])
    changed = inputs["audio"].clone()
    changed[0, 9] += 1.0  # frame 9 lies in patch 2 (frames 8-11)
    with torch.no_grad():
        before = head.patch_embed(inputs["audio"][:, :40].reshape(1, 10, 256))
        after = head.patch_embed(changed[:, :40].reshape(1, 10, 256))
    differs = (before != after).any(dim=-1)[0]
    assert differs.tolist() == [i == 2 for i in range(10)]


def test_padding_invariance_eval() -> None:
    torch.manual_seed(3)
    head = build(DIMS, 4).eval()
    inputs = batch([37, 80, 54, 3], pad=55.0)  # garbage padding: it must not matter either
    assert_items_match_alone(head, inputs)


def test_text_matters() -> None:
    torch.manual_seed(4)
    head = build(DIMS, 4).eval()
    inputs = batch([40, 40])
    other = {**inputs, "text": torch.randn(2, DIMS["text"])}
    with torch.no_grad():
        assert not torch.allclose(head(inputs), head(other))


def test_long_items_keep_their_first_patches() -> None:
    torch.manual_seed(5)
    head = build(DIMS, 4, max_patches=8).eval()
    inputs = batch([60, 20])
    first = {**inputs, "audio": inputs["audio"][:, :32], "audio_lengths": torch.tensor([32, 20])}
    with torch.no_grad():
        torch.testing.assert_close(head(inputs), head(first))


def test_rejects() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        build(DIMS, 4, patch_size=256)
    with pytest.raises(ValueError, match="text"):
        build({"audio": 64}, 4)


def test_batch_shorter_than_one_patch() -> None:
    """No whole patch anywhere: the audio pools to 0 and the logits stay finite (text key only)."""
    torch.manual_seed(8)
    head = build(DIMS, 4).eval()
    inputs = batch([3, 1])
    with torch.no_grad():
        logits, features = head.forward_features(inputs)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    assert torch.equal(features, torch.zeros_like(features))
