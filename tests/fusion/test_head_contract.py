"""Contract tests over the whole head registry: every head honours the same interface."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ser.errors import UserError
from ser.fusion.heads import HEADS, head_module, resolve_head_config, torch_heads

N_CLASSES = 5


def garbage(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Finite values far from the data (scale 5, offset 3): an unmasked sum, mean, max or attention
    over padded positions changes the output, where zero padding could hide it."""
    return torch.randn(*shape, generator=generator) * 5 + 3


def make_inputs(name: str, lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs for ``name`` built from its INPUTS / EXAMPLE_DIMS: pooled (B, D), seq (B, T, D) + lengths,
    with random garbage (not zeros) beyond each item's length."""
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
                values[row, length:] = garbage((longest - length, dim), generator)
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


@pytest.mark.parametrize("name", torch_heads())
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
    generator = torch.Generator().manual_seed(5)
    for key, value in alone.items():  # put the same item in row 1 of a batch padded to 40 steps
        if key.endswith("_lengths"):
            continue
        if value.dim() == 3:
            padded[key][1] = garbage(tuple(padded[key][1].shape), generator)  # garbage beyond step 24
            padded[key][1, : value.shape[1]] = value[0]
        else:
            padded[key][1] = value[0]
    with torch.no_grad():
        torch.testing.assert_close(head(padded)[1], head(alone)[0], atol=1e-4, rtol=1e-4)
        other = make_inputs(name, [40, 24], seed=4)  # the same batch with different garbage in row 1
        for key, value in other.items():
            if value.dim() == 3:
                value[1] = padded[key][1]
                value[1, 24:] = garbage(tuple(value[1, 24:].shape), generator)
            elif not key.endswith("_lengths"):
                value[1] = padded[key][1]
        torch.testing.assert_close(head(other)[1], head(alone)[0], atol=1e-4, rtol=1e-4)


# Options other than the defaults whose code paths have their own layers or pooling; each is checked
# for gradients too. ``ZERO_GRADIENT`` lists, per (head, option), the parameters that LEGITIMATELY get
# no gradient there, with the reason; nothing else may.
VARIANTS: dict[str, list[dict[str, object]]] = {
    "memocmt": [{"pooling": "mean"}, {"pooling": "max"}, {"pooling": "first"}],
    "mser4": [{"pooling": "mean"}, {"pooling": "max"}, {"audio_norm": "min_max"}],
    "mser3": [{"audio_norm": "min_max"}, {"audio_norm": "none"}],
    "fleser": [
        {"fusion": "self_attention"},
        {"fusion": "cross_attention"},
        {"fusion": "concat"},
        {"fuzzy": "batch"},
        {"fuzzy": "none"},
        {"use_layernorm": False},
    ],
    "early_fusion": [{"tokens": "concat"}],
    "server": [{"nonlinear": True, "audio_norm": "mean"}],
    "serfuse": [{"nonlinear": True}],
}
ZERO_GRADIENT: dict[tuple[str, str], tuple[str, ...]] = {
    # pooling="first" reads position 0 of [text-side outputs ; audio-side outputs], a text-side output:
    # the audio-side block (text queries over audio) is off the output's path (memocmt.py documents it).
    ("memocmt", "pooling=first"): ("audio_attention.", "audio_linear.", "audio_norm."),
}
GRADIENT_CASES = [(name, {}) for name in torch_heads()] + [(n, v) for n, vs in VARIANTS.items() for v in vs]


def _label(options: dict[str, object]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"


@pytest.mark.parametrize(("name", "options"), GRADIENT_CASES, ids=[f"{n}-{_label(o)}" for n, o in GRADIENT_CASES])
def test_gradients_reach_every_parameter(name: str, options: dict[str, object]) -> None:
    """Every trainable parameter gets a gradient with non-zero mass (an all-zero gradient is a dead
    parameter too), except the documented exemptions, which must really get none."""
    module = head_module(name)
    torch.manual_seed(0)
    head = module.build(dict(module.EXAMPLE_DIMS), N_CLASSES, **options).train()
    torch.manual_seed(1)
    logits = head(make_inputs(name, [40, 32, 28, 36]))
    (logits * torch.randn_like(logits)).sum().backward()  # random class weights: no symmetric cancelling
    exempt = ZERO_GRADIENT.get((name, _label(options)), ())
    dead, unexpectedly_alive = [], []
    for p_name, p in head.named_parameters():
        if not p.requires_grad:
            continue
        mass = 0.0 if p.grad is None else float(p.grad.abs().sum())
        if p_name.startswith(exempt) and exempt:
            if mass > 0:
                unexpectedly_alive.append(p_name)
        elif not mass > 0:
            dead.append(p_name)
    assert not dead, f"{name} ({_label(options)}): no gradient for {dead}"
    assert not unexpectedly_alive, f"{name}: exempted parameters got a gradient: {unexpectedly_alive}"


def test_every_exemption_names_a_variant() -> None:
    cases = {(n, _label(o)) for n, o in GRADIENT_CASES}
    assert set(ZERO_GRADIENT) <= cases


@pytest.mark.parametrize("name", torch_heads())
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


@pytest.mark.parametrize("name", list(HEADS))
def test_config_dataclass_is_declared_and_resolved(name: str) -> None:
    module = head_module(name)
    assert dataclasses.is_dataclass(module.CONFIG)
    options, resolved = resolve_head_config(name, {})
    assert options == {}
    assert set(resolved) == {f.name for f in dataclasses.fields(module.CONFIG)}
    with pytest.raises(UserError, match=f"fusion head {name}: .*no_such_option"):
        resolve_head_config(name, {"no_such_option": 1})


def test_classic_heads_are_the_only_non_torch_heads_and_build_their_config() -> None:
    assert sorted(set(HEADS) - set(torch_heads())) == ["logreg", "svm"]
    assert head_module("svm").build({"audio": 4}, 3, C=[1.0]).C == [1.0]
    with pytest.raises(UserError, match="kernel"):
        resolve_head_config("svm", {"kernel": "poly"})


def test_head_options_from_yaml_strings_are_coerced_by_field_type() -> None:
    options, resolved = resolve_head_config("mlp", {"dropout": "1e-1", "hidden": ["64", 32]})
    assert options == {"dropout": 0.1, "hidden": [64, 32]}
    assert resolved["dropout"] == 0.1 and resolved["input_dropout"] is None
    assert resolve_head_config("fleser", {"alpha": "5e-1", "hidden": "1.28e2"})[0] == {"alpha": 0.5, "hidden": 128}
    assert resolve_head_config("fleser", {"fusion": "concat"})[1]["fusion"] == "concat"  # strings stay strings
    with pytest.raises(UserError, match=r"head\.dropout must be a number"):
        resolve_head_config("mlp", {"dropout": "lots"})
    with pytest.raises(UserError, match=r"head\.hidden must be a whole number"):
        resolve_head_config("fleser", {"hidden": "2.5"})
    with pytest.raises(UserError, match="fusion head fleser: unknown fusion 'bogus'"):
        resolve_head_config("fleser", {"fusion": "bogus"})
