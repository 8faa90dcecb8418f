"""Fusion heads, one file per published variant, all with one forward signature.

Contract (every head module):

* a kw-only config dataclass whose defaults are the paper's values (deviations documented in a
  comment next to the field), with a docstring per field;
* an ``nn.Module`` whose ``forward(inputs)`` takes a dict of modality tensors and returns logits
  ``(B, C)``:

  - pooled inputs: ``inputs["audio"]`` / ``inputs["text"]`` / ``inputs["mocap"]`` of shape ``(B, D)``;
  - sequence inputs: ``inputs["audio"]`` of shape ``(B, T, D)`` (zero-padded) plus
    ``inputs["audio_lengths"]`` ``(B,)`` int64 valid lengths (likewise ``text``, ``mocap``);
    heads must give the same output for an item whatever padding the batch adds (use key-padding
    masks and masked pooling from ``ser.fusion.blocks``);
  - optional ``inputs["speaker"]`` ``(B,)`` int64 speaker index (SER-Fuse).

  Heads that support feature-level losses (center, ArcFace, ...) also implement
  ``forward_features(inputs) -> (logits (B, C), features (B, F))`` and set ``feature_dim``.
* ``build(dims: dict[str, int], n_classes: int, **overrides) -> nn.Module`` where ``dims`` maps each
  modality the head receives to its feature dimension D; unknown overrides raise a ``TypeError``
  naming the accepted fields (through the dataclass constructor).

Each module also defines ``CONFIG`` (its config dataclass: ``ser fit`` coerces ``head.*`` values by
its field types and records every field in ``config.yaml``), ``INPUTS: dict[str, str]``: modality ->
``"pooled"`` or ``"seq"`` (what the data loader must produce), with ``"?"`` suffix for optional
modalities (``"pooled?"``), and ``EXAMPLE_DIMS: dict[str, int]``: small input dims the
registry-wide contract tests build it with.

The classic baselines ``logreg`` and ``svm`` (``engine="sklearn"``) follow the same module contract
(CONFIG, INPUTS, EXAMPLE_DIMS, ``build``) but ``build`` returns their config: ``ser.fusion.classic``
fits them. The registry below maps names to ``module:build`` literals, so listing heads imports no torch.
Each head's paper training recipe is in ``ser.fusion.presets`` (torch-free as well).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from ser.errors import UserError, unknown_name
from ser.options import coerce_fields


@dataclass(frozen=True)
class HeadInfo:
    """One registry entry."""

    target: str
    """``module`` holding ``build``, ``INPUTS`` and the config dataclass."""
    description: str
    source: str
    """The paper (or project) the head reproduces."""
    engine: str = "torch"
    """``torch`` (an ``nn.Module`` trained by ``ser.fusion.train``) or ``sklearn`` (a classic
    estimator trained by ``ser.fusion.classic``)."""


HEADS: dict[str, HeadInfo] = {
    "mlp": HeadInfo("ser.fusion.heads.mlp", "unimodal or concatenated pooled vectors -> MLP (baseline)", "baseline"),
    "logreg": HeadInfo(
        "ser.fusion.heads.logreg",
        "class-balanced logistic regression, C chosen on validation",
        "classic baseline (scikit-learn)",
        engine="sklearn",
    ),
    "svm": HeadInfo(
        "ser.fusion.heads.svm",
        "class-balanced SVM (RBF or linear), C and gamma chosen on validation",
        "classic baseline (scikit-learn)",
        engine="sklearn",
    ),
    "server": HeadInfo(
        "ser.fusion.heads.server",
        "text pooler + summed VGGish, concatenation, linear head",
        "Pham et al., SERVER (ICIIT 2023)",
    ),
    "mser3": HeadInfo(
        "ser.fusion.heads.mser3",
        "token self-attention + joint text/audio sequence attention",
        "Tran et al., 3M-SER (INISCOM 2023)",
    ),
    "mser4": HeadInfo("ser.fusion.heads.mser4", "3M-SER with pooling choice and feature losses", "Tran et al., 4M-SER"),
    "memocmt": HeadInfo(
        "ser.fusion.heads.memocmt",
        "two cross-attentions, min/mean/max/first pooling, masked",
        "Tran et al., MemoCMT (Scientific Reports 2025)",
    ),
    "fleser": HeadInfo(
        "ser.fusion.heads.fleser",
        "modal encoders, fuzzy membership, alpha-weighted fusion",
        "Nguyen et al., FleSER (EAAI 2026)",
    ),
    "serfuse": HeadInfo(
        "ser.fusion.heads.serfuse", "text CLS + speaker embedding, concatenation", "Pham et al., SER-Fuse (SOICT 2023)"
    ),
    "patamia": HeadInfo(
        "ser.fusion.heads.patamia",
        "text, speech, motion-capture branches concatenated",
        "Patamia et al. (PRML 2021; arXiv 2312.01568)",
    ),
    "early_fusion": HeadInfo(
        "ser.fusion.heads.early_fusion", "CLS-token transformer over projected vectors", "Copenhagen SER project (2025)"
    ),
    "xattn_patch": HeadInfo(
        "ser.fusion.heads.xattn_patch",
        "cross-attention between log-mel patches and text",
        "Copenhagen SER project (2025)",
    ),
    "resnet18": HeadInfo(
        "ser.fusion.heads.resnet18", "ResNet-18 on cached log-mel, SpecAugment", "Copenhagen SER project (2025)"
    ),
    "cnn_bilstm": HeadInfo(
        "ser.fusion.heads.cnn_bilstm", "CNN + BiLSTM on cached log-mel, SpecAugment", "Copenhagen SER project (2025)"
    ),
    "audio_transformer": HeadInfo(
        "ser.fusion.heads.audio_transformer", "transformer on log-mel frames", "Copenhagen SER project (2025)"
    ),
}


def head_module(name: str) -> ModuleType:
    """Import a head's module (a :class:`UserError` names the choices for unknown names)."""
    if name not in HEADS:
        raise unknown_name("fusion head", name, HEADS)
    return importlib.import_module(HEADS[name].target)


def torch_heads() -> list[str]:
    """Names of the neural heads (every head but the classic scikit-learn baselines)."""
    return [name for name, info in HEADS.items() if info.engine == "torch"]


def resolve_head_config(name: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check ``overrides`` against head ``name``'s config dataclass before anything is trained.

    Returns ``(options, resolved)``: the overrides with numeric strings coerced by the field types
    (what ``build`` gets) and every field of the resulting config (what ``config.yaml`` records).
    Unknown or invalid options are a :class:`UserError` naming the accepted fields.
    """
    module = head_module(name)
    options = coerce_fields(module.CONFIG, dict(overrides), "head")
    try:
        config = module.CONFIG(**options)
    except (TypeError, ValueError) as err:
        fields = ", ".join(module.CONFIG.__dataclass_fields__)
        raise UserError(f"fusion head {name}: {err} (head options: {fields})") from None
    return options, asdict(config)
