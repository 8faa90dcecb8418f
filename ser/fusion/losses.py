"""Training losses: cross-entropy, focal, and the 4M-SER feature losses.

Shapes: B = batch, C = classes, F = feature dimension (the head's ``feature_dim``).

Two kinds of building blocks:

* **logit losses** take ``(logits (B, C), labels (B,))``: ``nn.CrossEntropyLoss``,
  [`FocalLoss`][ser.fusion.losses.FocalLoss];
* **feature losses** take ``(features (B, F), labels (B,))``: [`CenterLoss`][ser.fusion.losses.CenterLoss],
  [`ContrastiveCenterLoss`][ser.fusion.losses.ContrastiveCenterLoss],
  [`CombinedMarginLoss`][ser.fusion.losses.CombinedMarginLoss] (ArcFace / CosFace).

The trainer only sees [`TrainingLoss`][ser.fusion.losses.TrainingLoss] objects (what
[`build_loss`][ser.fusion.losses.build_loss] returns), which share one call ``loss(logits, features, labels) -> scalar``
and a ``needs_features`` flag (when False, ``features`` may be ``None`` and the head's plain ``forward`` suffices; when
True, the head must implement ``forward_features``). Learnable loss parameters (centers, margin weights) are ordinary
``nn.Parameter``s of the returned module, so ``loss.parameters()`` hands them to an optimiser;
class weights are buffers, so ``loss.to(device)`` moves them. ``predict_logits`` says which logits
to take the arg-max of at evaluation (see [`FeatureOnlyLoss`][ser.fusion.losses.FeatureOnlyLoss]).

Deviations from the 4M-SER code (recorded here on purpose). Each of the four losses takes
``paper_form``: False (the default) gives the textbook loss below, True reproduces the 4M-SER code,
value and gradient (checked against that code's outputs by ``tests/fusion/test_golden.py``):

* Focal: the seed detached ``p_t`` in the modulating factor ``(1 - p_t)^γ`` (same value, but the
  factor passes no gradient); ours is the standard, fully differentiable focal loss.
* Center: the seed used the unsquared Frobenius norm of the whole batch, ``λ_c/(2B)·‖F − C_y‖_F``;
  default here is the standard squared form (Wen et al. 2016).
* Contrastive-center: the seed divided batch sums (Σ intra / Σ inter) and then by 0.1; default
  here is the per-sample ratio of Qi & Su (2017).
* Combined margin: the seed edited the logits in place under ``no_grad`` (so the ArcFace margin never
  reached the gradient, which was that of the plain cosine) and clamped to [−1, 1] (infinite
  ``acos`` gradient at the ends); ours is differentiable and clamps to [−1 + 1e-7, 1 − 1e-7].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ser.errors import unknown_name

_COS_EPS = 1e-7
_FOCAL_FLOOR = 1e-12


def _check_features(features: torch.Tensor | None, labels: torch.Tensor, feat_dim: int, who: str) -> torch.Tensor:
    if features is None:
        raise ValueError(f"{who} needs features: call the head's forward_features")
    if features.dim() != 2 or features.shape[1] != feat_dim:
        raise ValueError(f"{who} expects features of shape (B, {feat_dim}), got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"{who}: labels shape {tuple(labels.shape)} does not match batch {features.shape[0]}")
    return features


def _class_weight_buffer(weights: torch.Tensor | None, n_classes: int) -> torch.Tensor | None:
    if weights is None:
        return None
    weights = torch.as_tensor(weights, dtype=torch.float32).detach().clone()
    if weights.shape != (n_classes,):
        raise ValueError(f"class weights must have shape ({n_classes},), got {tuple(weights.shape)}")
    if bool((weights < 0).any()):
        raise ValueError("class weights must be non-negative")
    return weights


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) on logits.

    With p_t the softmax probability of the true class and α_t its class weight::

        FL = Σ_i α_{y_i} · (1 − p_{t,i})^γ · (−log p_{t,i}) / Σ_i α_{y_i}

    Without ``alpha`` every α is 1, so FL is the plain mean over the batch. With ``alpha`` the
    normalisation by Σ α matches ``nn.CrossEntropyLoss(weight=alpha)``, so γ = 0 gives exactly
    the (weighted) cross-entropy.

    Default: fully differentiable. ``paper_form=True`` reproduces 4M-SER, which detached p_t in the
    modulating factor: the same value, but the gradient with respect to the logits z_i (B, C) is
    that of a constant factor, ``α_{y_i}·(1 − p_{t,i})^γ·(softmax(z_i) − onehot(y_i)) / Σ α``. With
    ``alpha`` the normalisation stays Σ α (the 4M-SER code would divide by B, but its focal config
    sets no α).

    Args:
        gamma: focusing parameter γ ≥ 0 (4M-SER config: 1.5).
        alpha: optional ``(C,)`` per-class weights.
        paper_form: detach p_t in ``(1 − p_t)^γ``, as the 4M-SER code.

    Call: ``(logits (B, C), labels (B,) int64) -> scalar``.
    """

    alpha: torch.Tensor | None

    def __init__(self, gamma: float = 1.5, alpha: torch.Tensor | None = None, paper_form: bool = False) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.paper_form = paper_form
        if alpha is not None:
            alpha = torch.as_tensor(alpha, dtype=torch.float32).detach().clone()
            if alpha.dim() != 1:
                raise ValueError(f"focal alpha must be a (C,) vector, got shape {tuple(alpha.shape)}")
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_pt = F.log_softmax(logits.float(), dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)  # (B,)
        pt = log_pt.exp()
        modulating: torch.Tensor
        if self.gamma == 0:  # exactly 1, also where p_t == 1
            modulating = torch.ones_like(pt)
        elif self.paper_form:  # 4M-SER: a constant factor (no gradient); p_t <= 1, so no floor is needed
            modulating = (1.0 - pt.detach()).pow(self.gamma)
        else:
            # The floor keeps the gradient of (1 − p_t)^γ finite for γ < 1 when p_t rounds to 1 (it
            # would otherwise be 0 · ∞ = NaN).
            modulating = (1.0 - pt).clamp(min=_FOCAL_FLOOR).pow(self.gamma)
        per_item = -modulating * log_pt  # (B,)
        if self.alpha is None:
            return per_item.mean()
        weights = self.alpha[labels]
        return (weights * per_item).sum() / weights.sum()

    def extra_repr(self) -> str:
        alpha = "None" if self.alpha is None else self.alpha.tolist()
        return f"gamma={self.gamma}, alpha={alpha}, paper_form={self.paper_form}"


class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016) with learnable class centers ``C ∈ R^{C×F}``, N(0, 1) init.

    Default (standard, squared)::

        L = λ_c / (2B) · Σ_i ‖f_i − c_{y_i}‖²

    ``paper_form=True`` reproduces 4M-SER, the unsquared Frobenius norm of the whole batch::

        L = λ_c / (2B) · ‖F − C_y‖_F = λ_c / (2B) · sqrt(Σ_i ‖f_i − c_{y_i}‖²)

    (whose gradient is undefined when every feature sits on its center).

    The centers are trained by back-propagation (``self.centers`` is an ``nn.Parameter``; give
    it to an optimiser), not by the moving-average update of the original paper.

    Call: ``(features (B, F), labels (B,) int64) -> scalar``.
    """

    def __init__(self, n_classes: int, feat_dim: int, lambda_c: float = 1.0, paper_form: bool = False) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.feat_dim = feat_dim
        self.lambda_c = float(lambda_c)
        self.paper_form = paper_form
        self.centers = nn.Parameter(torch.randn(n_classes, feat_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = _check_features(features, labels, self.feat_dim, "CenterLoss")
        diff = features.float() - self.centers[labels]  # (B, F)
        squared = diff.pow(2).sum()
        batch = features.shape[0]
        if self.paper_form:
            return self.lambda_c / (2.0 * batch) * squared.sqrt()
        return self.lambda_c / (2.0 * batch) * squared

    def extra_repr(self) -> str:
        return (
            f"n_classes={self.n_classes}, feat_dim={self.feat_dim}, lambda_c={self.lambda_c}, "
            f"paper_form={self.paper_form}"
        )


class ContrastiveCenterLoss(nn.Module):
    """Contrastive-center loss (Qi & Su 2017) with learnable centers, N(0, 1) init.

    With d = squared L2 distance, default (per-sample ratio)::

        L = λ_c / (2B) · Σ_i d(f_i, c_{y_i}) / (Σ_{j≠y_i} d(f_i, c_j) + δ)

    ``paper_form=True`` reproduces 4M-SER, a ratio of batch sums with an extra division by 0.1::

        L = λ_c / (2B) · Σ_i d(f_i, c_{y_i}) / (Σ_i Σ_{j≠y_i} d(f_i, c_j) + δ) / 0.1

    Call: ``(features (B, F), labels (B,) int64) -> scalar``.
    """

    def __init__(
        self, n_classes: int, feat_dim: int, lambda_c: float = 1.0, delta: float = 1e-6, paper_form: bool = False
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError("the contrastive-center loss needs at least two classes")
        self.n_classes = n_classes
        self.feat_dim = feat_dim
        self.lambda_c = float(lambda_c)
        self.delta = float(delta)
        self.paper_form = paper_form
        self.centers = nn.Parameter(torch.randn(n_classes, feat_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = _check_features(features, labels, self.feat_dim, "ContrastiveCenterLoss")
        dist = (features.float().unsqueeze(1) - self.centers.unsqueeze(0)).pow(2).sum(-1)  # (B, C)
        intra = dist.gather(1, labels.unsqueeze(1)).squeeze(1)  # (B,)
        inter = dist.sum(1) - intra  # (B,)
        scale = self.lambda_c / (2.0 * features.shape[0])
        if self.paper_form:
            return scale * intra.sum() / (inter.sum() + self.delta) / 0.1
        return scale * (intra / (inter + self.delta)).sum()

    def extra_repr(self) -> str:
        return (
            f"n_classes={self.n_classes}, feat_dim={self.feat_dim}, lambda_c={self.lambda_c}, "
            f"delta={self.delta}, paper_form={self.paper_form}"
        )


class CombinedMarginLoss(nn.Module):
    """Combined angular-margin softmax (insightface): SphereFace m1, ArcFace m2, CosFace m3.

    Class weights ``W ∈ R^{C×F}`` (N(0, 0.01) init) and features are L2-normalised::

        cos θ_ij = clamp(f̂_i · ŵ_j, −1 + 1e-7, 1 − 1e-7)
        logit_ij = s · (cos(m1·θ_ij + m2) − m3)   if j = y_i   (θ = acos(cos θ))
                   s · cos θ_ij                    otherwise
        L = CE(logits, y)        (optionally class-weighted, like ``nn.CrossEntropyLoss(weight=...)``)

    ArcFace: m1 = 1, m2 = 0.5, m3 = 0; CosFace: m1 = 1, m2 = 0, m3 = 0.5; s = 64 (4M-SER config).
    For ArcFace, cos(θ + m2) stops decreasing once θ > π − m2; like the seed we do not patch that.

    Default: differentiable throughout. ``paper_form=True`` reproduces the 4M-SER code, which clamps
    cos θ to [−1, 1] and edits the target logits in place under ``no_grad``: the loss value and
    [`margin_logits`][ser.fusion.losses.CombinedMarginLoss.margin_logits] include the margin, but the gradient is that
    of CE(margin logits) passed back through the plain ``s · cos θ``, as if the margin were absent (∂L/∂cos θ_ij =
    s·(softmax of the margin logits − one-hot)_ij / B). For CosFace (a constant shift) that is the gradient of the
    default form; for ArcFace it is not. The seed only ran ArcFace (m1 = 1, m3 = 0) or CosFace
    (m3 > 0, m2 and m1 ignored), so ``paper_form`` rejects other combinations.

    Args:
        n_classes: C. feat_dim: F.
        s: scale; m1, m2, m3: the three margins.
        class_weight: optional ``(C,)`` weights of the CE (the seed had none).
        paper_form: reproduce the 4M-SER code (see above).

    Call: ``(features (B, F), labels (B,) int64) -> scalar``.
    [`cosine_logits`][ser.fusion.losses.CombinedMarginLoss.cosine_logits] gives the margin-free ``s · cos θ`` (B, C) to
    predict with.
    """

    class_weight: torch.Tensor | None

    def __init__(
        self,
        n_classes: int,
        feat_dim: int,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
        class_weight: torch.Tensor | None = None,
        paper_form: bool = False,
    ) -> None:
        super().__init__()
        if s <= 0:
            raise ValueError(f"margin scale s must be > 0, got {s}")
        if paper_form and (m1 != 1.0 or (m2 != 0.0 and m3 != 0.0) or m3 < 0.0):
            raise ValueError(
                "paper_form reproduces the 4M-SER code, which runs ArcFace (m1=1, m3=0) or CosFace (m1=1, "
                f"m2=0, m3>0) only; got m1={m1}, m2={m2}, m3={m3}"
            )
        self.n_classes = n_classes
        self.feat_dim = feat_dim
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.paper_form = paper_form
        self.weight = nn.Parameter(torch.randn(n_classes, feat_dim) * 0.01)
        self.register_buffer("class_weight", _class_weight_buffer(class_weight, n_classes))

    @classmethod
    def arcface(
        cls, n_classes: int, feat_dim: int, s: float = 64.0, m: float = 0.5, **kwargs: object
    ) -> CombinedMarginLoss:
        """ArcFace: target logit s·cos(θ + m)."""
        return cls(n_classes, feat_dim, s=s, m1=1.0, m2=m, m3=0.0, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def cosface(
        cls, n_classes: int, feat_dim: int, s: float = 64.0, m: float = 0.5, **kwargs: object
    ) -> CombinedMarginLoss:
        """CosFace: target logit s·(cos θ − m)."""
        return cls(n_classes, feat_dim, s=s, m1=1.0, m2=0.0, m3=m, **kwargs)  # type: ignore[arg-type]

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) -> clamped cos θ (B, C) between normalised features and class weights (clamped to
        [−1 + 1e-7, 1 − 1e-7], or to [−1, 1] with ``paper_form``)."""
        cos = F.normalize(features.float(), dim=-1) @ F.normalize(self.weight, dim=-1).t()
        bound = 1.0 if self.paper_form else 1.0 - _COS_EPS
        return cos.clamp(-bound, bound)

    def cosine_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) -> margin-free logits s·cos θ (B, C): what to take the arg-max of at evaluation."""
        return self.s * self.cosine(features)

    def _with_margin(self, target: torch.Tensor) -> torch.Tensor:
        """True-class cos θ (B, 1) -> cos(m1·θ + m2) − m3 (B, 1)."""
        if self.m1 != 1.0 or self.m2 != 0.0:
            target = torch.cos(self.m1 * torch.acos(target) + self.m2)
        if self.m3 != 0.0:
            target = target - self.m3
        return target

    def margin_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, F), (B,) -> scaled logits (B, C) with the margin applied to each true-class entry.

        With ``paper_form`` the margin is a constant added to the true-class cosines (computed
        without gradient), so the gradient flows through ``s · cos θ`` alone, as in the 4M-SER code.
        """
        features = _check_features(features, labels, self.feat_dim, "CombinedMarginLoss")
        cos = self.cosine(features)  # (B, C)
        target = cos.gather(1, labels.unsqueeze(1))  # (B, 1)
        if self.paper_form:
            with torch.no_grad():
                shift = self._with_margin(target) - target  # (B, 1), no gradient
            target = target + shift
        else:
            target = self._with_margin(target)
        is_target = F.one_hot(labels, self.n_classes).bool()
        return self.s * torch.where(is_target, target, cos)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.margin_logits(features, labels), labels, weight=self.class_weight)

    def extra_repr(self) -> str:
        return (
            f"n_classes={self.n_classes}, feat_dim={self.feat_dim}, s={self.s}, m1={self.m1}, "
            f"m2={self.m2}, m3={self.m3}, paper_form={self.paper_form}"
        )


# --------------------------------------------------------------------------------------------
# The one interface the trainer sees
# --------------------------------------------------------------------------------------------


class TrainingLoss(nn.Module):
    """Base of every loss [`build_loss`][ser.fusion.losses.build_loss] returns.

    Call: ``(logits (B, C), features (B, F) or None, labels (B,) int64) -> scalar``.
    """

    needs_features: bool = False
    """True when ``features`` must be given (the head must implement ``forward_features``)."""

    def forward(self, logits: torch.Tensor | None, features: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """The loss in float32 with autocast off, whatever the caller's autocast region: under fp16
        autocast a margin loss's clamp of cos θ to 1 − 1e-7 rounds to 1.0 and ``acos``'s gradient is
        infinite (GradScaler then skips the step), and the engines would differ by where they
        close the autocast region. Subclasses implement [`compute`][ser.fusion.losses.TrainingLoss.compute]."""
        with torch.autocast(labels.device.type, enabled=False):
            return self.compute(
                None if logits is None else logits.float(), None if features is None else features.float(), labels
            )

    def compute(self, logits: torch.Tensor | None, features: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """The scalar loss from float32 ``logits`` and ``features`` (autocast off)."""
        raise NotImplementedError

    def predict_logits(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The (B, C) scores whose arg-max is the prediction: the head's logits by default."""
        return logits


class LogitLoss(TrainingLoss):
    """Wraps a logit loss (CE, focal): ``loss(logits, features, labels) = inner(logits, labels)``."""

    needs_features = False

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def compute(self, logits: torch.Tensor | None, features: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.inner(logits, labels)
        return loss


class FeatureOnlyLoss(TrainingLoss):
    """Wraps a margin loss used alone (``arcface`` / ``cosface``): ``loss = inner(features, labels)``.

    The head's own classifier then receives no gradient, so
    [`predict_logits`][ser.fusion.losses.FeatureOnlyLoss.predict_logits] returns the margin loss's ``s·cos θ`` logits
    instead of the head's: evaluate with it.
    """

    needs_features = True

    def __init__(self, inner: CombinedMarginLoss) -> None:
        super().__init__()
        self.inner = inner

    def compute(self, logits: torch.Tensor | None, features: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.inner(
            _check_features(features, labels, self.inner.feat_dim, "FeatureOnlyLoss"), labels
        )
        return loss

    def predict_logits(self, logits: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
        """The margin loss's ``s·cos θ`` logits ``(B, C)`` from the ``(B, F)`` features; the head's own ``logits``
        are ignored (its classifier is not trained)."""
        if features is None:
            raise ValueError("a margin loss used alone predicts from features: call the head's forward_features")
        return self.inner.cosine_logits(features)


class CombinedLoss(TrainingLoss):
    """A logit loss plus a feature loss::

        lam is None:  L = primary(logits, y) + auxiliary(features, y)            (4M-SER "CE + X")
        otherwise:    L = lam · primary(logits, y) + (1 − lam) · auxiliary(features, y)   ("_Optim")

    After each call ``components`` holds the detached ``{"primary", "auxiliary"}`` values, for logging.
    """

    needs_features = True

    def __init__(self, primary: nn.Module, auxiliary: nn.Module, lam: float | None = None) -> None:
        super().__init__()
        if lam is not None and not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        self.primary = primary
        self.auxiliary = auxiliary
        self.lam = None if lam is None else float(lam)
        self.components: dict[str, torch.Tensor] = {}

    def compute(self, logits: torch.Tensor | None, features: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        if features is None:
            raise ValueError("a combined loss needs features: call the head's forward_features")
        primary: torch.Tensor = self.primary(logits, labels)
        auxiliary: torch.Tensor = self.auxiliary(features, labels)
        self.components = {"primary": primary.detach(), "auxiliary": auxiliary.detach()}
        if self.lam is None:
            return primary + auxiliary
        return self.lam * primary + (1.0 - self.lam) * auxiliary

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossInfo:
    """One registry entry: what the loss is and the options it takes, with their defaults (the 4M-SER
    config values); a value is coerced to the type of its default (``ser.options.coerce_like``)."""

    description: str
    """One line on the loss."""
    options: Mapping[str, object] = field(default_factory=dict)
    """Option -> default value (``train.loss_options``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


_MARGIN_ARCFACE = {"s": 64.0, "m1": 1.0, "m2": 0.5, "m3": 0.0, "paper_form": False}
_MARGIN_COSFACE = {"s": 64.0, "m1": 1.0, "m2": 0.0, "m3": 0.5, "paper_form": False}

LOSSES: dict[str, LossInfo] = {
    "ce": LossInfo("cross-entropy on the logits"),
    "focal": LossInfo("focal loss on the logits", {"gamma": 1.5, "paper_form": False}),
    "ce+center": LossInfo(
        "cross-entropy + center loss on the head's features", {"lambda_c": 1.0, "paper_form": False, "lam": None}
    ),
    "ce+contrastive_center": LossInfo(
        "cross-entropy + contrastive-center loss on the head's features",
        {"lambda_c": 1.0, "delta": 1e-6, "paper_form": False, "lam": None},
    ),
    "arcface": LossInfo("additive angular margin (ArcFace) on the head's features", _MARGIN_ARCFACE),
    "cosface": LossInfo("additive cosine margin (CosFace) on the head's features", _MARGIN_COSFACE),
    "ce+arcface": LossInfo("cross-entropy + ArcFace", {**_MARGIN_ARCFACE, "lam": None}),
    "ce+cosface": LossInfo("cross-entropy + CosFace", {**_MARGIN_COSFACE, "lam": None}),
}
"""Loss name -> its record; the names [`build_loss`][ser.fusion.losses.build_loss] accepts."""


def loss_info(name: str) -> LossInfo:
    """The record of loss ``name`` (an [`UnknownNameError`][ser.errors.UnknownNameError] names the losses)."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES) from None


def build_loss(
    name: str,
    n_classes: int,
    feat_dim: int | None = None,
    class_weights: torch.Tensor | None = None,
    **options: object,
) -> TrainingLoss:
    """Build a [`TrainingLoss`][ser.fusion.losses.TrainingLoss] by name (one of [`LOSSES`][ser.fusion.losses.LOSSES]).

    Args:
        name: ``ce``, ``focal``, ``ce+center``, ``ce+contrastive_center``, ``arcface``, ``cosface``,
            ``ce+arcface`` or ``ce+cosface``.
        n_classes: C.
        feat_dim: F, the head's ``feature_dim``; required by every loss with ``needs_features``.
        class_weights: optional ``(C,)`` weights (the trainer derives them from TRAINING labels
            only). They weight every softmax classification term: the CE, the focal loss (as its
            α) and the margin loss's softmax when it is used alone — never the center losses.
            In ``ce+arcface`` / ``ce+cosface`` only the CE part is weighted.
        **options: per-name options (see [`LOSSES`][ser.fusion.losses.LOSSES]): ``gamma``; ``lambda_c``, ``delta``;
            ``s``, ``m1``, ``m2``, ``m3``; ``paper_form`` (every loss but ``ce``: reproduce the
            4M-SER code, see the module docstring); and ``lam`` for the ``ce+…`` names (None:
            CE + X; a float λ: λ·CE + (1 − λ)·X).

    Raises:
        UnknownNameError: unknown name (a ``UserError`` and ``LookupError``).
        TypeError: unknown option. ValueError: missing ``feat_dim``.
    """
    accepted = loss_info(name).options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"loss {name!r} got unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}"
        )
    opts: dict[str, Any] = {**accepted, **options}
    weights = _class_weight_buffer(class_weights, n_classes)

    if name == "ce":
        return LogitLoss(nn.CrossEntropyLoss(weight=weights))
    if name == "focal":
        return LogitLoss(FocalLoss(gamma=opts["gamma"], alpha=weights, paper_form=opts["paper_form"]))

    if feat_dim is None or feat_dim <= 0:
        raise ValueError(f"loss {name!r} works on head features: pass feat_dim (the head's feature_dim)")
    margin = {k: opts[k] for k in ("s", "m1", "m2", "m3", "paper_form") if k in opts}
    if name in ("arcface", "cosface"):
        return FeatureOnlyLoss(CombinedMarginLoss(n_classes, feat_dim, class_weight=weights, **margin))

    auxiliary: nn.Module
    if name == "ce+center":
        auxiliary = CenterLoss(n_classes, feat_dim, lambda_c=opts["lambda_c"], paper_form=opts["paper_form"])
    elif name == "ce+contrastive_center":
        auxiliary = ContrastiveCenterLoss(
            n_classes, feat_dim, lambda_c=opts["lambda_c"], delta=opts["delta"], paper_form=opts["paper_form"]
        )
    else:  # ce+arcface, ce+cosface
        auxiliary = CombinedMarginLoss(n_classes, feat_dim, **margin)
    return CombinedLoss(nn.CrossEntropyLoss(weight=weights), auxiliary, lam=opts["lam"])


def loss_options(name: str) -> dict[str, object]:
    """The options ``name`` accepts, with their defaults (a copy)."""
    return dict(loss_info(name).options)
