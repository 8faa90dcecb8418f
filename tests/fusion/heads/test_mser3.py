"""3M-SER head: shapes, paper defaults, padding invariance, min-max over valid frames, gradients, seeds.

The sequence helpers here (``item``, ``collate``, ``assert_padding_invariant``, ``assert_all_grads``) are
shared with the 4M-SER and MemoCMT tests, which import them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ser.fusion.blocks import padding_mask
from ser.fusion.heads import mser3

PAPER_DIMS = {"text": 768, "audio": 128}  # BERT tokens, VGGish patches

Item = dict[str, torch.Tensor]


def item(gen: torch.Generator, dims: dict[str, int], text_len: int, audio_len: int) -> Item:
    """One utterance: unpadded (T, Dt) text tokens and (F, Da) audio frames."""
    return {
        "text": torch.randn(text_len, dims["text"], generator=gen),
        "audio": torch.randn(audio_len, dims["audio"], generator=gen) * 2 + 1,
    }


def collate(items: list[Item], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Stack items into padded (B, L, D) tensors plus ``<modality>_lengths``. The padding is finite random
    garbage (not zeros), so a head passes the invariance tests only if it really masks it."""
    batch: dict[str, torch.Tensor] = {}
    for modality in ("text", "audio"):
        sequences = [it[modality] for it in items]
        longest = max(len(s) for s in sequences)
        padded = torch.randn(len(items), longest, sequences[0].shape[1], generator=gen) * 5 + 3
        for i, sequence in enumerate(sequences):
            padded[i, : len(sequence)] = sequence
        batch[modality] = padded
        batch[f"{modality}_lengths"] = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return batch


def random_batch(
    dims: dict[str, int], text_lengths: list[int], audio_lengths: list[int], seed: int = 0
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return collate([item(gen, dims, t, a) for t, a in zip(text_lengths, audio_lengths, strict=True)], gen)


def assert_padding_invariant(
    run: Callable[[dict[str, torch.Tensor]], torch.Tensor], dims: dict[str, int], grad: bool = False
) -> None:
    """``run`` on an item alone equals ``run`` on the same item inside a batch where longer items pad it in
    both text and audio (and in the middle of the batch)."""
    gen = torch.Generator().manual_seed(1)
    target = item(gen, dims, 4, 6)
    longer = [item(gen, dims, 9, 11), item(gen, dims, 7, 15)]
    with torch.set_grad_enabled(grad):
        alone = run(collate([target], gen))
        batched = run(collate([longer[0], target, longer[1]], gen))
    assert batched.shape[0] == 3
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=0)


def assert_all_grads(head: nn.Module, dims: dict[str, int], n_classes: int, unreached: tuple[str, ...] = ()) -> None:
    """One cross-entropy backward pass in train mode gives every parameter a finite, non-zero gradient,
    except those whose names start with one of ``unreached`` (off the output's path), which get none."""
    torch.manual_seed(0)
    head.train()
    inputs = random_batch(dims, [5, 3, 7, 2], [6, 8, 3, 4])
    loss = F.cross_entropy(head(inputs), torch.arange(4) % n_classes)
    loss.backward()
    for name, param in head.named_parameters():
        if unreached and name.startswith(unreached):
            assert param.grad is None or not param.grad.any(), name
            continue
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def assert_same_init(build: Callable[[], nn.Module]) -> None:
    torch.manual_seed(3)
    first = build().state_dict()
    torch.manual_seed(3)
    second = build().state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)


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
