"""ser.fusion.losses: focal, center, contrastive-center, combined margin, combinations and build_loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ser.errors import UnknownNameError
from ser.fusion.losses import (
    LOSSES,
    CenterLoss,
    CombinedLoss,
    CombinedMarginLoss,
    ContrastiveCenterLoss,
    FeatureOnlyLoss,
    FocalLoss,
    LogitLoss,
    TrainingLoss,
    build_loss,
    loss_options,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- focal


def test_focal_gamma_zero_equals_cross_entropy() -> None:
    logits = torch.randn(32, 5) * 3
    labels = torch.randint(0, 5, (32,))
    expected = F.cross_entropy(logits, labels).item()
    assert FocalLoss(gamma=0.0)(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_focal_gamma_zero_with_alpha_equals_weighted_cross_entropy() -> None:
    logits = torch.randn(32, 4)
    labels = torch.randint(0, 4, (32,))
    alpha = torch.tensor([0.5, 1.0, 2.0, 3.0])
    expected = F.cross_entropy(logits, labels, weight=alpha).item()
    assert FocalLoss(gamma=0.0, alpha=alpha)(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_focal_down_weights_easy_examples() -> None:
    gamma = 2.0
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    label = torch.tensor([0])
    p_easy = 1 / (1 + math.exp(-4.0))  # 0.98201
    ce_easy, ce_hard = -math.log(p_easy), math.log(2.0)  # 0.018150, 0.693147
    focal = FocalLoss(gamma=gamma)
    assert focal(easy, label).item() == pytest.approx((1 - p_easy) ** 2 * ce_easy, rel=1e-5)  # 5.87e-6
    assert focal(hard, label).item() == pytest.approx(0.25 * ce_hard, rel=1e-5)  # 0.17329
    # Relative to CE, the easy example keeps 0.03 % of its loss, the hard one 25 %.
    assert focal(easy, label).item() / ce_easy < 1e-3
    assert focal(hard, label).item() / ce_hard == pytest.approx(0.25, rel=1e-5)
    # Batch mean.
    both = focal(torch.cat([easy, hard]), torch.tensor([0, 0])).item()
    assert both == pytest.approx(((1 - p_easy) ** 2 * ce_easy + 0.25 * ce_hard) / 2, rel=1e-5)


def test_focal_gradient_is_finite_for_saturated_logits_and_small_gamma() -> None:
    logits = torch.tensor([[60.0, 0.0, 0.0]], requires_grad=True)
    FocalLoss(gamma=0.5)(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_rejects_negative_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)


def _focal_grad(loss: FocalLoss, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = logits.clone().requires_grad_(True)
    loss(x, labels).backward()
    assert x.grad is not None
    return x.grad


@pytest.mark.parametrize("alpha", [None, torch.tensor([0.5, 1.0, 2.0, 3.0])])
@pytest.mark.parametrize("gamma", [0.5, 1.5, 2.0])
def test_focal_paper_form_value_equals_default(gamma: float, alpha: torch.Tensor | None) -> None:
    logits, labels = torch.randn(16, 4) * 2, torch.randint(0, 4, (16,))
    default = FocalLoss(gamma=gamma, alpha=alpha)(logits, labels)
    paper = FocalLoss(gamma=gamma, alpha=alpha, paper_form=True)(logits, labels)
    assert paper.item() == pytest.approx(default.item(), rel=1e-6)


@pytest.mark.parametrize("alpha", [None, torch.tensor([0.5, 1.0, 2.0, 3.0])])
@pytest.mark.parametrize("gamma", [0.5, 1.5])
def test_focal_paper_form_gradient_is_that_of_a_detached_factor(gamma: float, alpha: torch.Tensor | None) -> None:
    logits, labels = torch.randn(16, 4) * 2, torch.randint(0, 4, (16,))
    # 4M-SER: (1 − p_t)^γ is a constant, so dL/dz_i = w_i · (1 − p_t,i)^γ · (softmax(z_i) − onehot(y_i)),
    # with w_i = α_{y_i} / Σ α (1 / B without alpha).
    probs = torch.softmax(logits, dim=-1)
    factor = (1 - probs.gather(1, labels.unsqueeze(1))) ** gamma  # (B, 1)
    weights = torch.full((16,), 1 / 16) if alpha is None else alpha[labels] / alpha[labels].sum()
    expected = weights.unsqueeze(1) * factor * (probs - F.one_hot(labels, 4).float())
    paper = _focal_grad(FocalLoss(gamma=gamma, alpha=alpha, paper_form=True), logits, labels)
    assert torch.allclose(paper, expected, atol=1e-7)
    default = _focal_grad(FocalLoss(gamma=gamma, alpha=alpha), logits, labels)
    assert not torch.allclose(default, expected, atol=1e-4)  # the default differentiates the factor too


def test_focal_paper_form_gamma_zero_is_cross_entropy_and_repr() -> None:
    logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
    loss = FocalLoss(gamma=0.0, paper_form=True)
    assert loss(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-6)
    assert "paper_form=True" in repr(loss)


# ----------------------------------------------------------------------------- center


def test_center_loss_zero_on_centers_and_value() -> None:
    loss = CenterLoss(3, 4, lambda_c=2.0)
    labels = torch.tensor([0, 2, 2, 1])
    on_centers = loss.centers.detach()[labels].clone()
    assert loss(on_centers, labels).item() == pytest.approx(0.0, abs=1e-12)
    shifted = on_centers + torch.tensor([1.0, 0.0, 0.0, 0.0])  # each ‖f − c‖² = 1
    # λ/(2B)·Σ‖f − c‖² = 2/8·4 = 1
    assert loss(shifted, labels).item() == pytest.approx(1.0, rel=1e-6)


def test_center_loss_paper_form_is_unsquared_frobenius_norm() -> None:
    loss = CenterLoss(3, 4, lambda_c=2.0, paper_form=True)
    labels = torch.tensor([0, 2, 2, 1])
    shifted = loss.centers.detach()[labels] + torch.tensor([1.0, 0.0, 0.0, 0.0])
    # λ/(2B)·sqrt(Σ‖f − c‖²) = 2/8·sqrt(4) = 0.5
    assert loss(shifted, labels).item() == pytest.approx(0.5, rel=1e-6)


def test_center_loss_gradient_moves_centers_toward_features() -> None:
    loss = CenterLoss(2, 3, lambda_c=1.0)
    labels = torch.tensor([0, 0, 1])
    features = torch.randn(3, 3) * 5
    loss(features, labels).backward()
    grad = loss.centers.grad
    # d/dc_k = −(λ/B)·Σ_{i: y_i = k} (f_i − c_k): minus the gradient points at the features.
    expected = torch.stack([-(features[labels == k] - loss.centers[k]).sum(0) / 3 for k in range(2)]).detach()
    assert torch.allclose(grad, expected, atol=1e-5)
    before = (features[labels == 1] - loss.centers.detach()[1]).norm()
    with torch.no_grad():
        loss.centers -= 0.1 * grad
    assert (features[labels == 1] - loss.centers.detach()[1]).norm() < before


def test_center_loss_centers_are_parameters() -> None:
    loss = CenterLoss(4, 8)
    params = list(loss.parameters())
    assert len(params) == 1 and params[0].shape == (4, 8)


def test_center_loss_rejects_wrong_feature_dim() -> None:
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        CenterLoss(4, 8)(torch.randn(2, 7), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- contrastive center


def _hand_contrastive(paper_form: bool) -> ContrastiveCenterLoss:
    loss = ContrastiveCenterLoss(3, 2, lambda_c=1.0, delta=0.0, paper_form=paper_form)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))
    return loss


def test_contrastive_center_hand_example() -> None:
    features = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 2])
    # item 0 (class 0): d = (2, 1, 2) -> 2 / (1 + 2); item 1 (class 2): d = (1, 2, 1) -> 1 / (1 + 2)
    # L = 1/(2·2) · (2/3 + 1/3) = 0.25
    assert _hand_contrastive(False)(features, labels).item() == pytest.approx(0.25, rel=1e-6)
    # paper form: 1/4 · (2 + 1) / (3 + 3) / 0.1 = 1.25
    assert _hand_contrastive(True)(features, labels).item() == pytest.approx(1.25, rel=1e-6)


def test_contrastive_center_delta_and_gradients() -> None:
    loss = ContrastiveCenterLoss(3, 5, delta=1e-6)
    features = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    value = loss(features, labels)
    assert value.item() > 0
    value.backward()
    assert features.grad is not None and loss.centers.grad is not None
    assert loss.centers.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- combined margin


def _unit_margin(s: float, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0) -> CombinedMarginLoss:
    loss = CombinedMarginLoss(2, 2, s=s, m1=m1, m2=m2, m3=m3)
    with torch.no_grad():
        loss.weight.copy_(torch.eye(2))
    return loss


def test_margin_init() -> None:
    loss = CombinedMarginLoss(4, 1000)
    assert loss.weight.shape == (4, 1000)
    assert loss.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert [p.shape for p in loss.parameters()] == [torch.Size([4, 1000])]


def test_margin_without_margins_is_cross_entropy_on_cosine_logits() -> None:
    loss = CombinedMarginLoss(5, 8, s=1.0)
    features = torch.randn(16, 8)
    labels = torch.randint(0, 5, (16,))
    cosine = F.normalize(features) @ F.normalize(loss.weight.detach()).t()
    assert loss(features, labels).item() == pytest.approx(F.cross_entropy(cosine, labels).item(), abs=1e-6)
    scaled = CombinedMarginLoss(5, 8, s=30.0)
    with torch.no_grad():
        scaled.weight.copy_(loss.weight)
    assert scaled(features, labels).item() == pytest.approx(F.cross_entropy(30 * cosine, labels).item(), abs=1e-4)


def test_arcface_target_logit_hand_check() -> None:
    phi = 0.4  # angle between the feature and class 0's weight (W = identity)
    features = torch.tensor([[math.cos(phi), math.sin(phi)]]) * 3.0  # scale must not matter
    labels = torch.tensor([0])
    loss = CombinedMarginLoss.arcface(2, 2, s=64.0, m=0.5)
    with torch.no_grad():
        loss.weight.copy_(torch.eye(2))
    logits = loss.margin_logits(features, labels)
    assert logits[0, 0].item() == pytest.approx(64 * math.cos(phi + 0.5), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(64 * math.sin(phi), rel=1e-5)  # non-target: plain s·cos θ
    expected = -torch.log_softmax(logits, dim=-1)[0, 0].item()
    assert loss(features, labels).item() == pytest.approx(expected, rel=1e-6)
    assert (loss.m1, loss.m2, loss.m3) == (1.0, 0.5, 0.0)


def test_cosface_and_sphereface_target_logits() -> None:
    phi = 0.3
    features = torch.tensor([[math.cos(phi), math.sin(phi)]])
    labels = torch.tensor([0])
    cosface = CombinedMarginLoss.cosface(2, 2, s=10.0, m=0.5)
    with torch.no_grad():
        cosface.weight.copy_(torch.eye(2))
    assert cosface.margin_logits(features, labels)[0, 0].item() == pytest.approx(10 * (math.cos(phi) - 0.5), rel=1e-5)
    sphere = _unit_margin(s=1.0, m1=2.0)
    assert sphere.margin_logits(features, labels)[0, 0].item() == pytest.approx(math.cos(2 * phi), rel=1e-5)


def test_margin_gradients_flow_to_weights_and_features() -> None:
    for loss in (CombinedMarginLoss.arcface(4, 6), CombinedMarginLoss.cosface(4, 6)):
        features = torch.randn(8, 6, requires_grad=True)
        labels = torch.randint(0, 4, (8,))
        loss(features, labels).backward()
        assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
        assert torch.isfinite(loss.weight.grad).all() and loss.weight.grad.abs().sum() > 0


def test_arcface_gradient_sees_the_margin() -> None:
    # The seed applied the margin under no_grad, so its gradient was that of the plain cosine.
    features = torch.randn(8, 6)
    labels = torch.randint(0, 4, (8,))
    grads = []
    for m in (0.0, 0.5):
        loss = CombinedMarginLoss(4, 6, s=8.0, m2=m)
        with torch.no_grad():
            loss.weight.copy_(torch.linspace(-1, 1, 24).reshape(4, 6))
        f = features.clone().requires_grad_(True)
        loss(f, labels).backward()
        grads.append(f.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_margin_is_finite_when_feature_aligns_with_weight() -> None:
    loss = _unit_margin(s=64.0, m2=0.5)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)  # cos θ = 1 exactly
    loss(features, torch.tensor([0, 1])).backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(loss.weight.grad).all()


def test_margin_class_weights() -> None:
    weights = torch.tensor([1.0, 3.0])
    loss = CombinedMarginLoss(2, 4, s=4.0, m3=0.2, class_weight=weights)
    features, labels = torch.randn(6, 4), torch.tensor([0, 1, 1, 0, 1, 0])
    expected = F.cross_entropy(loss.margin_logits(features, labels), labels, weight=weights)
    assert loss(features, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def _margin_grads(loss: CombinedMarginLoss, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    f = features.clone().requires_grad_(True)
    loss.weight.grad = None
    value = loss(f, labels)
    value.backward()
    assert f.grad is not None and loss.weight.grad is not None
    return value.detach(), f.grad, loss.weight.grad.clone()


def _paired_margins(m2: float, m3: float) -> tuple[CombinedMarginLoss, CombinedMarginLoss]:
    default = CombinedMarginLoss(4, 6, s=16.0, m2=m2, m3=m3)
    paper = CombinedMarginLoss(4, 6, s=16.0, m2=m2, m3=m3, paper_form=True)
    with torch.no_grad():
        paper.weight.copy_(default.weight)
    return default, paper


def test_arcface_paper_form_value_and_logits_equal_default() -> None:
    default, paper = _paired_margins(m2=0.5, m3=0.0)
    features, labels = torch.randn(10, 6), torch.randint(0, 4, (10,))
    assert torch.allclose(paper.margin_logits(features, labels), default.margin_logits(features, labels), atol=1e-5)
    assert paper(features, labels).item() == pytest.approx(default(features, labels).item(), rel=1e-6)


def test_arcface_paper_form_gradient_is_plain_cosine_gradient() -> None:
    # 4M-SER: the margin is applied under no_grad, so dL/dcos = s·(softmax(margin logits) − onehot) / B
    # flows back through the plain cosine.
    default, paper = _paired_margins(m2=0.5, m3=0.0)
    features, labels = torch.randn(10, 6), torch.randint(0, 4, (10,))
    _, paper_features, paper_weight = _margin_grads(paper, features, labels)
    probs = torch.softmax(paper.margin_logits(features, labels).detach(), dim=-1)
    grad_cos = paper.s * (probs - F.one_hot(labels, 4).float()) / 10
    f = features.clone().requires_grad_(True)
    w = paper.weight.detach().clone().requires_grad_(True)
    (F.normalize(f, dim=-1) @ F.normalize(w, dim=-1).t()).backward(grad_cos)
    assert torch.allclose(paper_features, f.grad, atol=1e-6)
    assert torch.allclose(paper_weight, w.grad, atol=1e-5)
    _, default_features, _ = _margin_grads(default, features, labels)
    assert not torch.allclose(default_features, f.grad, atol=1e-3)  # the default's margin is differentiable


def test_cosface_paper_form_equals_default_value_and_gradient() -> None:
    # A constant shift of the target logit: detaching it changes nothing.
    default, paper = _paired_margins(m2=0.0, m3=0.35)
    features, labels = torch.randn(10, 6), torch.randint(0, 4, (10,))
    for a, b in zip(_margin_grads(default, features, labels), _margin_grads(paper, features, labels), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_margin_paper_form_clamps_to_one_and_stays_finite() -> None:
    loss = CombinedMarginLoss(2, 2, s=64.0, m2=0.5, paper_form=True)
    with torch.no_grad():
        loss.weight.copy_(torch.eye(2))
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)  # cos θ = 1 exactly
    labels = torch.tensor([0, 1])
    assert loss.cosine(features).max().item() == 1.0  # [−1, 1], as 4M-SER (the default stops at 1 − 1e-7)
    assert loss.margin_logits(features, labels)[0, 0].item() == pytest.approx(64 * math.cos(0.5), rel=1e-6)
    loss(features, labels).backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(loss.weight.grad).all()
    assert "paper_form=True" in repr(loss)


@pytest.mark.parametrize("margins", [{"m1": 2.0}, {"m2": 0.3, "m3": 0.2}, {"m3": -0.1}])
def test_margin_paper_form_rejects_what_4m_ser_cannot_run(margins: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="paper_form"):
        CombinedMarginLoss(3, 4, paper_form=True, **margins)


# ----------------------------------------------------------------------------- combinations


def test_combined_loss_arithmetic() -> None:
    ce, center = nn.CrossEntropyLoss(), CenterLoss(3, 4)
    logits, features = torch.randn(5, 3), torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 0, 1])
    a, b = ce(logits, labels).item(), center(features, labels).item()
    assert CombinedLoss(ce, center, None)(logits, features, labels).item() == pytest.approx(a + b, rel=1e-6)
    assert CombinedLoss(ce, center, 0.3)(logits, features, labels).item() == pytest.approx(0.3 * a + 0.7 * b, rel=1e-6)
    combined = CombinedLoss(ce, center, 1.0)
    assert combined(logits, features, labels).item() == pytest.approx(a, rel=1e-6)
    assert combined.components["primary"].item() == pytest.approx(a)
    assert combined.components["auxiliary"].item() == pytest.approx(b)
    with pytest.raises(ValueError, match="lam"):
        CombinedLoss(ce, center, 1.5)
    with pytest.raises(ValueError, match="features"):
        CombinedLoss(ce, center)(logits, None, labels)


# ----------------------------------------------------------------------------- build_loss


@pytest.mark.parametrize("name", LOSSES)
def test_build_loss_every_name(name: str) -> None:
    loss = build_loss(name, 4, 6, None)
    assert isinstance(loss, TrainingLoss)
    logits, features = torch.randn(8, 4, requires_grad=True), torch.randn(8, 6, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    value = loss(logits, features if loss.needs_features else None, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    n_params = len(list(loss.parameters()))
    if name in ("ce", "focal"):
        assert not loss.needs_features and n_params == 0
        assert features.grad is None
    else:
        assert loss.needs_features and n_params == 1  # centers or margin W, for the optimiser
        assert features.grad is not None
    assert loss.predict_logits(logits, features).shape == (8, 4)
    options = loss_options(name)
    options["bogus"] = 1
    assert "bogus" not in loss_options(name)  # a copy is returned


def test_build_loss_defaults_and_options() -> None:
    arc = build_loss("arcface", 4, 6, None)
    assert isinstance(arc, FeatureOnlyLoss)
    assert (arc.inner.s, arc.inner.m1, arc.inner.m2, arc.inner.m3) == (64.0, 1.0, 0.5, 0.0)
    cos = build_loss("ce+cosface", 4, 6, None, s=30.0, m3=0.35, lam=0.4)
    assert isinstance(cos, CombinedLoss) and cos.lam == 0.4
    assert (cos.auxiliary.s, cos.auxiliary.m2, cos.auxiliary.m3) == (30.0, 0.0, 0.35)
    focal = build_loss("focal", 4, 0, None, gamma=0.5)
    assert isinstance(focal, LogitLoss) and focal.inner.gamma == 0.5
    cc = build_loss("ce+contrastive_center", 4, 6, None, lambda_c=0.1, paper_form=True)
    assert cc.auxiliary.lambda_c == 0.1 and cc.auxiliary.paper_form and cc.lam is None


@pytest.mark.parametrize("name", [name for name in LOSSES if name != "ce"])
def test_build_loss_paper_form_option(name: str) -> None:
    assert loss_options(name)["paper_form"] is False
    loss = build_loss(name, 4, 6, None, paper_form=True)
    inner = {LogitLoss: "inner", FeatureOnlyLoss: "inner", CombinedLoss: "auxiliary"}[type(loss)]
    assert getattr(loss, inner).paper_form is True
    assert getattr(build_loss(name, 4, 6, None), inner).paper_form is False
    logits, features = torch.randn(8, 4), torch.randn(8, 6, requires_grad=True)
    value = loss(logits, features if loss.needs_features else None, torch.arange(8) % 4)
    assert torch.isfinite(value)


def test_build_loss_lambda_combination_arithmetic() -> None:
    torch.manual_seed(1)
    loss = build_loss("ce+center", 3, 4, None, lam=0.25)
    logits, features = torch.randn(6, 3), torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    ce = F.cross_entropy(logits, labels).item()
    diff = features - loss.auxiliary.centers.detach()[labels]
    center = (diff.pow(2).sum() / (2 * 6)).item()
    assert loss(logits, features, labels).item() == pytest.approx(0.25 * ce + 0.75 * center, rel=1e-6)


def test_build_loss_class_weights() -> None:
    weights = torch.tensor([0.5, 1.0, 2.0])
    logits, features = torch.randn(9, 3), torch.randn(9, 4)
    labels = torch.tensor([0, 1, 2] * 3)
    weighted_ce = F.cross_entropy(logits, labels, weight=weights).item()
    assert build_loss("ce", 3, 4, weights)(logits, None, labels).item() == pytest.approx(weighted_ce, rel=1e-6)
    focal = build_loss("focal", 3, 4, weights, gamma=0.0)
    assert focal(logits, None, labels).item() == pytest.approx(weighted_ce, rel=1e-6)
    combo = build_loss("ce+arcface", 3, 4, weights, lam=0.5)
    assert combo.components == {}
    combo(logits, features, labels)
    assert combo.components["primary"].item() == pytest.approx(weighted_ce, rel=1e-6)
    assert combo.auxiliary.class_weight is None  # only the CE part is weighted
    alone = build_loss("arcface", 3, 4, weights)
    assert torch.equal(alone.inner.class_weight, weights)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        build_loss("ce", 3, 4, torch.ones(4))


def test_build_loss_weights_are_buffers_that_follow_the_module() -> None:
    loss = build_loss("focal", 3, 4, torch.tensor([1.0, 2.0, 3.0]))
    assert "inner.alpha" in dict(loss.named_buffers())
    assert loss.to(torch.float64).inner.alpha.dtype == torch.float64


def test_build_loss_state_dict_holds_learnable_parameters() -> None:
    loss = build_loss("ce+center", 3, 4, None)
    assert "auxiliary.centers" in loss.state_dict()


def test_arcface_alone_predicts_from_margin_cosines() -> None:
    loss = build_loss("arcface", 3, 4, None)
    head_logits, features = torch.randn(5, 3), torch.randn(5, 4)
    predicted = loss.predict_logits(head_logits, features)
    assert torch.allclose(predicted, loss.inner.cosine_logits(features))
    assert not torch.allclose(predicted, head_logits)
    combined = build_loss("ce+arcface", 3, 4, None)
    assert torch.equal(combined.predict_logits(head_logits, features), head_logits)


def test_build_loss_errors() -> None:
    with pytest.raises(UnknownNameError, match="unknown loss 'triplet'"):
        build_loss("triplet", 3, 4, None)
    with pytest.raises(TypeError, match="gamma"):
        build_loss("ce", 3, 4, None, gamma=2.0)
    with pytest.raises(TypeError, match="accepted: gamma, paper_form"):
        build_loss("focal", 3, 4, None, lam=0.5)
    with pytest.raises(TypeError, match="paper_form"):
        build_loss("ce", 3, 4, None, paper_form=True)
    with pytest.raises(ValueError, match="feat_dim"):
        build_loss("ce+center", 3, 0, None)
    with pytest.raises(ValueError, match="lam"):
        build_loss("ce+center", 3, 4, None, lam=-0.1)
