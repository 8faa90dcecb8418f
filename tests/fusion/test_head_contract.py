"""Contract tests over the whole head registry: every head honours the same interface."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.heads import HEADS, head_module

N_CLASSES = 5


def make_inputs(name: str, lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs for ``name`` built from its INPUTS / EXAMPLE_DIMS: pooled (B, D), seq (B, T, D) + lengths."""
    module = head_module(name)
    generator = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for modality, dim in module.EXAMPLE_DIMS.items():
        kind = module.INPUTS[modality].rstrip("?")
        if kind == "pooled":
            batch[modality] = torch.randn(len(lengths), dim, generator=generator)
        else:
            longest = max(lengths)
            values = torch.randn(len(lengths), longest, dim, generator=generator)
            for row, length in enumerate(lengths):
                values[row, length:] = 0.0
            batch[modality] = values
            batch[f"{modality}_lengths"] = torch.tensor(lengths)
    return batch


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = head_module(name)
    return module.build(dict(module.EXAMPLE_DIMS), N_CLASSES)


def has_sequences(name: str) -> bool:
    module = head_module(name)
    return any(module.INPUTS[m].rstrip("?") == "seq" for m in module.EXAMPLE_DIMS)


@pytest.mark.parametrize("name", list(HEADS))
def test_module_declares_the_contract(name: str) -> None:
    module = head_module(name)
    assert callable(module.build)
    assert module.EXAMPLE_DIMS and set(module.EXAMPLE_DIMS) <= set(module.INPUTS)
    assert all(kind.rstrip("?") in ("pooled", "seq") for kind in module.INPUTS.values())


@pytest.mark.parametrize("name", list(HEADS))
def test_output_shape_and_finite_logits(name: str) -> None:
    head = build(name).eval()
    logits = head(make_inputs(name, [40, 24, 32]))
    assert logits.shape == (3, N_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", [n for n in HEADS if has_sequences(n)])
def test_padding_does_not_change_an_item(name: str) -> None:
    head = build(name).eval()
    alone = make_inputs(name, [24], seed=3)
    padded = make_inputs(name, [40, 24], seed=4)
    for key, value in alone.items():  # put the same item in row 1 of a batch padded to 40 steps
        if key.endswith("_lengths"):
            continue
        if value.dim() == 3:
            padded[key][1] = 0.0
            padded[key][1, : value.shape[1]] = value[0]
        else:
            padded[key][1] = value[0]
    with torch.no_grad():
        torch.testing.assert_close(head(padded)[1], head(alone)[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(HEADS))
def test_gradients_reach_every_parameter(name: str) -> None:
    head = build(name).train()
    torch.manual_seed(1)
    head(make_inputs(name, [40, 32, 28, 36])).sum().backward()
    missing = [p_name for p_name, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("name", list(HEADS))
def test_same_seed_same_output(name: str) -> None:
    inputs = make_inputs(name, [40, 24])
    first, second = build(name, seed=7).eval(), build(name, seed=7).eval()
    with torch.no_grad():
        torch.testing.assert_close(first(inputs), second(inputs), atol=0, rtol=0)
    other = build(name, seed=8).eval()
    with torch.no_grad():
        assert not torch.equal(first(inputs), other(inputs))


@pytest.mark.parametrize("name", list(HEADS))
def test_unknown_override_is_refused(name: str) -> None:
    module = head_module(name)
    with pytest.raises(TypeError, match="no_such_option"):
        module.build(dict(module.EXAMPLE_DIMS), N_CLASSES, no_such_option=1)
