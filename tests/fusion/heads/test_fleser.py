"""FleSER head: membership functions, selection rules, batch (in)dependence, fusions, degeneracy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ser.fusion.heads import fleser
from ser.fusion.heads.fleser import (
    EXAMPLE_DIMS,
    FUSIONS,
    FUZZY_MODES,
    FUZZY_TYPES,
    MEMBERSHIPS,
    LengthOneAttention,
    build,
    fuzzify,
    gaussian_membership,
    linear_membership,
    piecewise_membership,
    select_fuzzy_type,
    select_fuzzy_types,
    sigmoid_membership,
    standardise,
    tanh_membership,
)
from tests.fusion.heads.headutil import assert_every_parameter_learns, pooled_batch

N_CLASSES = 4


def _inputs(batch: int = 6, seed: int = 0, dims: dict[str, int] = EXAMPLE_DIMS) -> dict[str, torch.Tensor]:
    return pooled_batch(dims, batch, torch.Generator().manual_seed(seed))


def _built(seed: int = 0, dims: dict[str, int] = EXAMPLE_DIMS, **overrides: object) -> fleser.FleserHead:
    torch.manual_seed(seed)
    return build(dims, N_CLASSES, **overrides).eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


# --- membership functions -----------------------------------------------------------------------


def test_sigmoid_membership_clips_at_four() -> None:
    z = torch.tensor([-100.0, -4.0, 0.0, 1.0, 4.0, 100.0])
    expected = torch.tensor(
        [
            1 / (1 + math.exp(4)),
            1 / (1 + math.exp(4)),
            0.5,
            1 / (1 + math.exp(-1)),
            1 / (1 + math.exp(-4)),
            1 / (1 + math.exp(-4)),
        ]
    )
    assert torch.allclose(sigmoid_membership(z), expected)


def test_tanh_membership_clips_at_two() -> None:
    z = torch.tensor([-9.0, -0.5, 0.0, 2.0, 9.0])
    expected = torch.tensor([-math.tanh(2), -math.tanh(0.5), 0.0, math.tanh(2), math.tanh(2)])
    assert torch.allclose(tanh_membership(z), expected)


def test_linear_membership_is_clipped_softplus() -> None:
    z = torch.tensor([-30.0, -1.0, 0.0, 0.5, 3.0])
    expected = torch.tensor([0.0, math.log1p(math.exp(-1)), math.log(2), math.log1p(math.exp(0.5)), 1.0])
    assert torch.allclose(linear_membership(z), expected, atol=1e-7)


def test_gaussian_membership_peaks_at_half() -> None:
    tail = math.exp(-0.25 / (2 * 0.15**2))  # clip(z, 0, 1) = 0 or 1
    z = torch.tensor([0.5, 0.2, 0.8, -3.0, 0.0, 1.0, 7.0])
    expected = torch.tensor([1.0, math.exp(-2.0), math.exp(-2.0), tail, tail, tail, tail])
    assert torch.allclose(gaussian_membership(z), expected)
    assert gaussian_membership(torch.linspace(-2, 3, 501)).max() <= 1.0


def test_piecewise_membership_values() -> None:
    z = torch.tensor([0.2, 0.5, 0.8, -1.0, 0.0, 0.3, 0.7, 5.0])
    expected = torch.tensor([0.04, 0.75, 0.9, 0.0, 0.0, 0.65, 0.9, 0.9])
    assert torch.allclose(piecewise_membership(z), expected)


def test_standardise_per_sample_over_features() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0]], [[10.0, 30.0, 20.0]]])
    z = standardise(x)
    assert torch.allclose(z[0, 0], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4)  # unbiased std = 1
    assert torch.allclose(z[1, 0], torch.tensor([-1.0, 1.0, 0.0]), atol=1e-4)  # std = 10


# --- selection rules ----------------------------------------------------------------------------

RULE_CASES = {
    "linear": 0.5 + 0.01 * torch.linspace(-1, 1, 101),  # symmetric, inside [0, 1], σ < 0.1
    "gaussian": torch.linspace(0, 1, 101),  # symmetric, inside [0, 1], σ ≈ 0.29
    "tanh": torch.cat([torch.zeros(99), torch.tensor([5.0, 10.0])]),  # skew ≫ 0.5
    "sigmoid": torch.linspace(-2, 2, 101),  # symmetric, min < 0, max > 1.5
    "piecewise": torch.linspace(-1, 1, 101),  # symmetric, min < 0, μ = 0, max = 1
}


@pytest.mark.parametrize("expected", list(RULE_CASES))
def test_rules_hit_each_branch(expected: str) -> None:
    x = RULE_CASES[expected]
    assert select_fuzzy_type(x.view(1, 1, -1)) == expected
    assert FUZZY_TYPES[int(select_fuzzy_types(x.view(1, 1, -1))[0])] == expected


def test_rules_other_branches() -> None:
    assert select_fuzzy_type(-RULE_CASES["tanh"]) == "tanh"  # negative skew counts too
    assert select_fuzzy_type(torch.linspace(0.8, 1.2, 101)) == "sigmoid"  # via μ > 0.7 (max ≤ 1.5)
    # rule (a) comes first: a symmetric tensor inside [0, 1] with μ > 0.7 is not 'sigmoid'
    assert select_fuzzy_type(torch.linspace(0.6, 1.0, 101)) == "gaussian"  # σ ≈ 0.12


def test_per_sample_rules_versus_whole_batch() -> None:
    rows = torch.stack(list(RULE_CASES.values())).unsqueeze(1)  # (5, 1, 101)
    per_sample = [FUZZY_TYPES[i] for i in select_fuzzy_types(rows).tolist()]
    assert per_sample == list(RULE_CASES)
    assert select_fuzzy_type(rows) in FUZZY_TYPES  # one type for the whole batch


def test_per_sample_fuzzify_equals_sample_by_sample() -> None:
    rows = torch.stack(list(RULE_CASES.values())).unsqueeze(1)
    out = fuzzify(rows, "per_sample")
    for i in range(rows.shape[0]):
        alone = MEMBERSHIPS[select_fuzzy_type(rows[i : i + 1])](standardise(rows[i : i + 1]))
        assert torch.equal(out[i : i + 1], alone)


def test_fixed_and_none_modes() -> None:
    x = torch.randn(3, 1, 8)
    assert torch.equal(fuzzify(x, "none"), x)
    for name in FUZZY_TYPES:
        assert torch.equal(fuzzify(x, name), MEMBERSHIPS[name](standardise(x)))


# --- batch (in)dependence -----------------------------------------------------------------------


def _transparent_head(fuzzy: str) -> fleser.FleserHead:
    """A 32-d head whose encoders output LayerNorm(LayerNorm(ReLU(x))): identity first layer and a zero
    attention branch, so the encoder output's shape statistics (skew) are those of ReLU(x)."""
    head = _built(dims={"text": 32, "audio": 32}, hidden=32, fuzzy=fuzzy)
    with torch.no_grad():
        for encoder in head.encoders.values():
            encoder.linear.weight.copy_(torch.eye(32))
            encoder.linear.bias.zero_()
            encoder.attn.out_proj.weight.zero_()
            encoder.attn.out_proj.bias.zero_()
    return head


SYMMETRIC = 3.0 + torch.linspace(-1, 1, 32)  # skew 0, standardised max ≈ 1.7 -> 'sigmoid'
SKEWED = torch.cat([-torch.ones(24), torch.linspace(0.5, 3.0, 8)])  # ReLU -> right-skewed -> 'tanh'


def _pair(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"text": x, "audio": x.clone()}


def test_batch_mode_prediction_depends_on_the_batch() -> None:
    """The paper's flaw: one membership type for the whole batch, so other items change a prediction."""
    head = _transparent_head("batch")
    alone = SYMMETRIC[None]
    batch = torch.stack([SYMMETRIC, SKEWED, SKEWED, SKEWED])
    encoder = head.encoders["text"]
    with torch.no_grad():
        assert select_fuzzy_type(encoder(alone[:, None])) == "sigmoid"
        assert select_fuzzy_type(encoder(SKEWED[None, None])) == "tanh"
        assert select_fuzzy_type(encoder(batch[:, None])) == "tanh"  # the skewed items flip the rule
        logits_alone = head(_pair(alone))
        logits_in_batch = head(_pair(batch))[:1]
    assert not _close(logits_alone, logits_in_batch)


def test_per_sample_mode_prediction_is_independent_of_the_batch() -> None:
    head = _transparent_head("per_sample")
    batch = torch.stack([SYMMETRIC, SKEWED, SKEWED, SKEWED])
    with torch.no_grad():
        assert _close(head(_pair(SYMMETRIC[None])), head(_pair(batch))[:1])
        assert _close(head(_pair(SKEWED[None])), head(_pair(batch))[1:2])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_per_sample_default_head_ignores_batch_composition(fusion: str) -> None:
    head = _built(fusion=fusion)
    assert head.config.fuzzy == "per_sample"
    item = _inputs(batch=1, seed=1)
    others = _inputs(batch=5, seed=2)
    others = {m: x * torch.tensor([[100.0], [-3.0], [0.01], [1.0], [50.0]]) + 7.0 for m, x in others.items()}
    others["audio"][3] = others["audio"][3].abs() ** 3  # a strongly skewed item
    batch = {m: torch.cat([others[m][:2], item[m], others[m][2:]]) for m in item}
    with torch.no_grad():
        assert _close(head(item), head(batch)[2:3])


# --- fusion methods, alpha, degeneracy ----------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("fuzzy", FUZZY_MODES)
def test_output_shapes(fusion: str, fuzzy: str) -> None:
    head = _built(fusion=fusion, fuzzy=fuzzy)
    logits, features = head.forward_features(_inputs(batch=5))
    assert logits.shape == (5, N_CLASSES)
    assert features.shape == (5, head.feature_dim) == (5, 256)
    assert torch.isfinite(logits).all()
    assert head(_inputs(batch=5)).shape == (5, N_CLASSES)


def test_paper_defaults() -> None:
    config = fleser.FleserConfig()
    assert (config.hidden, config.heads, config.dropout, config.alpha) == (256, 4, 0.3, 0.3)
    assert (config.fusion, config.use_layernorm, config.classifier) == ("gmu", True, (64, 32))
    head = build({"text": 768, "audio": 768}, 7)
    assert [m.out_features for m in head.classifier if isinstance(m, nn.Linear)] == [64, 32, 7]
    assert head.encoders["text"].attn.dropout == 0.3
    assert isinstance(head.classifier[1], nn.LayerNorm)


def test_batchnorm_classifier() -> None:
    head = build(EXAMPLE_DIMS, N_CLASSES, use_layernorm=False)
    assert isinstance(head.classifier[1], nn.BatchNorm1d)
    assert head.train()(_inputs(batch=4)).shape == (4, N_CLASSES)
    assert head.eval()(_inputs(batch=1)).shape == (1, N_CLASSES)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_alpha_only_changes_cross_attention(fusion: str) -> None:
    inputs = _inputs()
    with torch.no_grad():
        low = _built(seed=3, fusion=fusion, alpha=0.1)(inputs)
        high = _built(seed=3, fusion=fusion, alpha=0.9)(inputs)
    assert _close(low, high) == (fusion != "cross_attention")


def test_cross_attention_is_an_alpha_weighted_affine_map() -> None:
    """Length-1 attention degenerates: MHA(q, kv) = out_proj(v_proj(kv)) whatever q, so
    cross-attention = α·L(a_f) + (1 − α)·L(t_f) with one shared L."""
    alpha = 0.3
    fusion = _built(fusion="cross_attention", alpha=alpha).fusion
    assert fusion is not None
    text, audio = torch.randn(5, 1, 256), torch.randn(5, 1, 256)
    attn = fusion.attn

    def affine(x: torch.Tensor) -> torch.Tensor:
        return attn.out_proj(F.linear(x, attn.value.weight, attn.value.bias))

    with torch.no_grad():
        mixed = alpha * affine(audio) + (1 - alpha) * affine(text)
        expected = fusion.norm(fusion.proj(torch.cat([text, audio], dim=-1)) + mixed).mean(dim=1)
        assert torch.allclose(fusion(text, audio), expected, atol=1e-5)


def _twins(dropout: float) -> tuple[nn.MultiheadAttention, LengthOneAttention]:
    """A full attention and a length-1 attention built from the same seed."""
    torch.manual_seed(0)
    full = nn.MultiheadAttention(16, 4, dropout=dropout, batch_first=True)
    torch.manual_seed(0)
    return full, LengthOneAttention(16, 4, dropout=dropout)


def test_length_one_attention_is_the_multihead_attention_it_replaces() -> None:
    """Same weights from a seed, same output for any query, and a full attention's state loads."""
    full, attn = _twins(dropout=0.5)
    full.eval(), attn.eval()
    torch.testing.assert_close(attn.value.weight, full.in_proj_weight[32:])
    torch.testing.assert_close(attn.out_proj.weight, full.out_proj.weight)
    value = torch.randn(6, 1, 16)
    with torch.no_grad():
        for query in (value, torch.randn(6, 1, 16)):
            torch.testing.assert_close(attn(value), full(query, value, value)[0])
        fresh = LengthOneAttention(16, 4, dropout=0.5).eval()
        assert not torch.allclose(fresh(value), attn(value))
        fresh.load_state_dict(full.state_dict())  # the query/key rows are dropped
        torch.testing.assert_close(fresh(value), attn(value))


def test_length_one_attention_dropout_keeps_or_zeroes_whole_heads() -> None:
    """Attention dropout on a weight of 1 keeps or zeroes each head's output, x 1/(1-p)."""
    _, attn = _twins(dropout=0.5)
    attn.train()
    value = torch.randn(6, 1, 16)
    with torch.no_grad():
        heads = attn.value(value).view(6, 4, 4)
        out = attn(value)
        solved = torch.linalg.solve(attn.out_proj.weight, (out - attn.out_proj.bias).view(6, 16).T).T.view(6, 4, 4)
    scale = (solved / heads).mean(dim=-1)  # per sample and head: 0 (dropped) or 2 (kept)
    torch.testing.assert_close(solved, scale[..., None] * heads, atol=1e-4, rtol=1e-4)
    assert set(scale.round().flatten().tolist()) == {0.0, 2.0}


def test_a_head_saved_with_full_attentions_loads() -> None:
    """State dicts written before the query/key projections were left out still load and predict."""
    head = _built(fusion="self_attention").eval()
    old = {}
    for key, tensor in head.state_dict().items():
        if key.endswith("attn.value.weight"):
            old[key.replace("value.weight", "in_proj_weight")] = torch.cat([torch.randn(2 * 256, 256), tensor])
        elif key.endswith("attn.value.bias"):
            old[key.replace("value.bias", "in_proj_bias")] = torch.cat([torch.randn(2 * 256), tensor])
        else:
            old[key] = tensor
    again = _built(seed=5, fusion="self_attention").eval()
    again.load_state_dict(old)
    inputs = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(again(inputs), head(inputs))


def test_only_the_used_fusion_layers_exist() -> None:
    assert not hasattr(_built(fusion="gmu").fusion, "proj")
    assert not hasattr(_built(fusion="concat").fusion, "attn")
    assert hasattr(_built(fusion="self_attention").fusion, "attn")


def _assert_all_parameters_get_gradients(head: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    targets = torch.arange(next(iter(inputs.values())).shape[0]) % N_CLASSES
    F.cross_entropy(head(inputs), targets).backward()
    assert_every_parameter_learns(head)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_gradients_reach_every_parameter(fusion: str) -> None:
    _assert_all_parameters_get_gradients(_built(fusion=fusion), _inputs(batch=8))


def test_query_and_key_projections_of_a_length_one_attention_get_zero_gradient() -> None:
    """Why they are left out: with one key the softmax is constant, so in ``nn.MultiheadAttention``
    W_q and W_k never learn (only weight decay shrinks them) and never change an output."""
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, batch_first=True)
    query, value = torch.randn(8, 1, 16), torch.randn(8, 1, 16)
    attn(query, value, value)[0].square().sum().backward()
    grad, bias_grad = attn.in_proj_weight.grad, attn.in_proj_bias.grad
    assert grad is not None and bias_grad is not None
    assert torch.count_nonzero(grad[:32]) == 0 and torch.count_nonzero(bias_grad[:32]) == 0
    assert grad[32:].abs().sum() > 0


# --- unimodal mode, construction errors ---------------------------------------------------------


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_unimodal_mode(modality: str) -> None:
    dims = {modality: EXAMPLE_DIMS[modality]}
    head = _built(dims=dims, fusion="cross_attention")
    assert head.fusion is None
    inputs = _inputs(batch=3, dims=dims)
    logits, features = head.forward_features(inputs)
    assert logits.shape == (3, N_CLASSES)
    with torch.no_grad():
        expected = fuzzify(head.encoders[modality](inputs[modality][:, None]), "per_sample").mean(dim=1)
    assert torch.allclose(features, expected)
    _assert_all_parameters_get_gradients(head, inputs)


def test_unknown_override_raises_type_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        build(EXAMPLE_DIMS, N_CLASSES, bogus=1)


@pytest.mark.parametrize("overrides", [{"fusion": "sum"}, {"fuzzy": "triangle"}, {"alpha": 1.5}, {"hidden": 30}])
def test_invalid_config_raises_value_error(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build(EXAMPLE_DIMS, N_CLASSES, **overrides)


@pytest.mark.parametrize("dims", [{}, {"mocap": 8}, {"text": 8, "mocap": 8}])
def test_unsupported_modalities_raise(dims: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        build(dims, N_CLASSES)


def test_module_constants() -> None:
    assert fleser.INPUTS == {"text": "pooled?", "audio": "pooled?"}  # either alone is the unimodal ablation
    assert set(EXAMPLE_DIMS) == set(fleser.INPUTS)
