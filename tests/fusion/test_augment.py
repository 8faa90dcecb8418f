"""SpecAugment: training-only, widths in range, padding untouched, floor fill, reproducible under seeds."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.augment import SpecAugment

N_MELS = 64


def logmel(lengths: list[int], pad: float = 123.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 64) log-mel-like frames (around -6, floor well above -30) with padding set to ``pad``."""
    t = max(lengths)
    x = torch.randn(len(lengths), t, N_MELS) * 2.0 - 6.0
    for i, length in enumerate(lengths):
        x[i, length:] = pad
    return x, torch.tensor(lengths)


def runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, width) of the True runs of a 1-D bool mask."""
    out, start = [], None
    for i, value in enumerate([*mask.tolist(), False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_eval_mode_is_identity() -> None:
    x, lengths = logmel([50, 40])
    aug = SpecAugment(p_time=1.0, p_freq=1.0).eval()
    assert aug(x, lengths) is x


def test_mask_widths_within_ranges_and_inside_valid_frames() -> None:
    torch.manual_seed(0)
    aug = SpecAugment()
    lengths = torch.randint(30, 80, (400,))
    time_mask, freq_mask = aug.sample_masks(lengths, 80, N_MELS)
    assert time_mask.shape == (400, 80) and freq_mask.shape == (400, N_MELS)
    for i in range(400):
        t_runs, f_runs = runs(time_mask[i]), runs(freq_mask[i])
        assert len(t_runs) <= 1 and len(f_runs) <= 1
        for start, width in t_runs:
            assert 10 <= width <= 30 and start + width <= int(lengths[i])
        for _, width in f_runs:
            assert 5 <= width <= 15
    # each mask is applied with p = 0.5
    assert 0.4 < time_mask.any(dim=1).float().mean() < 0.6
    assert 0.4 < freq_mask.any(dim=1).float().mean() < 0.6


def test_short_items_are_masked_within_their_length() -> None:
    torch.manual_seed(1)
    aug = SpecAugment(p_time=1.0)
    lengths = torch.tensor([0, 1, 5, 12])
    time_mask, _ = aug.sample_masks(lengths, 40, N_MELS)
    for i, length in enumerate(lengths.tolist()):
        assert not time_mask[i, length:].any()
    assert not time_mask[0].any()
    assert time_mask[1, 0] and time_mask[2, :5].all()  # width >= 10 clipped to the whole item
    assert 10 <= int(time_mask[3].sum()) <= 12


def test_training_masks_fill_with_item_minimum_and_never_touch_padding() -> None:
    torch.manual_seed(2)
    x, lengths = logmel([70, 45, 33, 60])
    aug = SpecAugment(p_time=1.0, p_freq=1.0).train()
    y = aug(x, lengths)
    assert y.shape == x.shape and not torch.equal(x, y)
    for i, length in enumerate(lengths.tolist()):
        assert torch.equal(y[i, length:], x[i, length:])  # padding (123.0) untouched
        changed = y[i, :length] != x[i, :length]
        assert changed.any()
        floor, peak = x[i, :length].min(), x[i, :length].max()
        assert torch.all(y[i, :length][changed] == floor)
        assert floor < peak  # the fill is the item's silence floor, never its loudest value


def test_masked_region_is_a_time_band_or_freq_band() -> None:
    torch.manual_seed(3)
    x, lengths = logmel([64, 64])
    aug = SpecAugment(p_time=1.0, p_freq=1.0).train()
    torch.manual_seed(3)
    time_mask, freq_mask = aug.sample_masks(lengths, 64, N_MELS)
    torch.manual_seed(3)
    y = aug(x, lengths)
    expected = time_mask[:, :, None] | freq_mask[:, None, :]
    floors = x.amin(dim=(1, 2))
    assert torch.equal(y, torch.where(expected, floors[:, None, None], x))


def test_deterministic_under_manual_seed() -> None:
    x, lengths = logmel([80, 50, 65])
    aug = SpecAugment().train()
    torch.manual_seed(7)
    a = aug(x, lengths)
    torch.manual_seed(7)
    b = aug(x, lengths)
    assert torch.equal(a, b)
    outs = []
    for seed in range(8):
        torch.manual_seed(seed)
        outs.append(aug(x, lengths))
    assert any(not torch.equal(outs[0], other) for other in outs[1:])


def test_gradient_flows_through_unmasked_values() -> None:
    torch.manual_seed(4)
    x, lengths = logmel([40, 30], pad=0.0)
    x.requires_grad_(True)
    SpecAugment(p_time=1.0, p_freq=1.0).train()(x, lengths).sum().backward()
    assert x.grad is not None and x.grad.sum() > 0


@pytest.mark.parametrize(
    "kwargs", [{"time_width": (30, 10)}, {"freq_width": (-1, 5)}, {"p_time": 1.5}, {"p_freq": -0.1}]
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SpecAugment(**kwargs)  # type: ignore[arg-type]
