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
fits them. The registry below holds one :class:`HeadInfo` record per head: its module (imported only when the head
is built, so listing heads imports no torch), description, paper and training preset (the ``train.*``
values the paper fixes, with a note on how they follow it; ``ser.fusion.presets`` explains the order
in which they apply).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from ser.errors import UserError, unknown_name
from ser.options import coerce_fields

ENGINES = ("torch", "sklearn")


@dataclass(frozen=True)
class HeadInfo:
    """One registry entry: everything ``ser`` knows about a head without importing it."""

    target: str
    """``module`` holding ``build``, ``INPUTS`` and the config dataclass."""
    description: str
    source: str
    """The paper (or project) the head reproduces."""
    engine: str = "torch"
    """``torch`` (an ``nn.Module`` trained by ``ser.fusion.train``) or ``sklearn`` (a classic
    estimator trained by ``ser.fusion.classic``)."""
    preset: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The paper's ``train.*`` values (read-only; :func:`train_preset` hands out a copy). A preset only
    names what the paper fixes; everything else keeps the ``TrainConfig`` default."""
    preset_note: str = ""
    """Where the preset comes from and where it departs from the paper."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))
        if self.engine not in ENGINES:
            raise ValueError(f"head engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")


ADAM_STEP: Mapping[str, Any] = MappingProxyType(
    {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "step", "step_size": 30, "gamma": 0.1}
)
"""Adam 1e-4 (β 0.9/0.999, eps 1e-8, no weight decay) with StepLR(30, 0.1) per epoch: the
Pham/Tran family's recipe (SERVER, 3M-SER, 4M-SER, MemoCMT, SER-Fuse)."""

COPENHAGEN: Mapping[str, Any] = MappingProxyType(
    {
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "schedule": "plateau",
        "gamma": 0.8,
        "plateau_patience": 2,
        "epochs": 30,
        "batch_size": 64,
    }
)
"""The Copenhagen project's train_model.py (one script trains all its models): Adam 1e-4 with weight
decay 1e-4, ReduceLROnPlateau(factor 0.8, patience 2) on validation loss, 30 epochs, batch 64, CE. Its
optional early stop (patience 3 on validation loss) is off by default there, so off here too."""

FIXED_EPOCHS: Mapping[str, Any] = MappingProxyType({"patience": 0})
"""Every paper preset trains a fixed number of epochs (``ser.fusion.presets``: no early stopping)."""

_COPENHAGEN_SOURCE = "Copenhagen SER project (2025)"
_COPENHAGEN_NOTE = (
    "the Copenhagen script's Adam 1e-4 with weight decay 1e-4, ReduceLROnPlateau(0.8, patience 2) on "
    "validation loss, 30 epochs, batch 64"
)


def _paper(*parts: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    """A paper preset: the shared recipe(s), fixed epochs, then the head's own values."""
    merged: dict[str, Any] = {}
    for part in (*parts, FIXED_EPOCHS):
        merged.update(part)
    return {**merged, **values}


HEADS: dict[str, HeadInfo] = {
    "mlp": HeadInfo(
        "ser.fusion.heads.mlp",
        "unimodal or concatenated pooled vectors -> MLP (baseline)",
        "baseline",
        preset_note="our baseline, no paper: the TrainConfig defaults (AdamW 1e-3, weight decay 1e-2, batch 32, "
        "early stopping after 20 epochs without a better validation UA)",
    ),
    "logreg": HeadInfo(
        "ser.fusion.heads.logreg",
        "class-balanced logistic regression, C chosen on validation",
        "classic baseline (scikit-learn)",
        engine="sklearn",
        preset={"refit": True},
        preset_note="the grid point is chosen on validation, then refitted on train + validation, as the "
        "logistic-regression rows of SER papers train on every training speaker (epochs, lr, ... do not apply)",
    ),
    "svm": HeadInfo(
        "ser.fusion.heads.svm",
        "class-balanced SVM (RBF or linear), C and gamma chosen on validation",
        "classic baseline (scikit-learn)",
        engine="sklearn",
        preset={"refit": True},
        preset_note="the grid point is chosen on validation, then refitted on train + validation, as the SVM "
        "rows of SER papers train on every training speaker (epochs, lr, ... do not apply)",
    ),
    "server": HeadInfo(
        "ser.fusion.heads.server",
        "text pooler + summed VGGish, concatenation, linear head",
        "Pham et al., SERVER (ICIIT 2023)",
        preset=_paper(ADAM_STEP, epochs=101),
        preset_note="CE, Adam 1e-4, StepLR(30, 0.1) stepped each epoch, 101 epochs (batch 1 there, 32 here; "
        "the best validation epoch is kept instead of the last)",
    ),
    "mser3": HeadInfo(
        "ser.fusion.heads.mser3",
        "token self-attention + joint text/audio sequence attention",
        "Tran et al., 3M-SER (INISCOM 2023)",
        preset=_paper(ADAM_STEP, epochs=200),
        preset_note="Adam 1e-4, StepLR(30, 0.1) STEPPED each epoch (the source builds it but never calls "
        "step(): constant lr, a bug not reproduced), 200 epochs (batch 1 there, 32 here; validation, not "
        "the test set, chooses the checkpoint)",
    ),
    "mser4": HeadInfo(
        "ser.fusion.heads.mser4",
        "3M-SER with pooling choice and feature losses",
        "Tran et al., 4M-SER",
        preset=_paper(ADAM_STEP, epochs=100),
        preset_note="Adam 1e-4 (the SSL configs; the hidden SGD 0.99 default of the others is not copied), "
        "StepLR(30, 0.1), 100 epochs (batch 1 there, 32 here), best validation accuracy",
    ),
    "memocmt": HeadInfo(
        "ser.fusion.heads.memocmt",
        "two cross-attentions, min/mean/max/first pooling, masked",
        "Tran et al., MemoCMT (Scientific Reports 2025)",
        preset=_paper(ADAM_STEP, epochs=100),
        preset_note="CE, Adam 1e-4, StepLR(30, 0.1), 100 epochs (batch 1 there, 32 here), best validation accuracy",
    ),
    "fleser": HeadInfo(
        "ser.fusion.heads.fleser",
        "modal encoders, fuzzy membership, alpha-weighted fusion",
        "Nguyen et al., FleSER (EAAI 2026)",
        preset=_paper(
            optimizer="adamw",
            lr=1e-4,
            weight_decay=1e-2,
            batch_size=64,
            epochs=100,
            schedule="plateau",
            gamma=0.3,
            plateau_patience=30,
        ),
        preset_note="model v2 as run at the repository's HEAD: AdamW lr 1e-4 wd 1e-2, batch 64, 100 epochs, "
        "ReduceLROnPlateau(min, factor 0.3, patience 30) on validation loss (v1: Adam 1e-4, batch 128, 150 "
        "epochs, StepLR(30, 0.3)); the source keeps the best validation WA, we select on train.select",
    ),
    "serfuse": HeadInfo(
        "ser.fusion.heads.serfuse",
        "text CLS + speaker embedding, concatenation",
        "Pham et al., SER-Fuse (SOICT 2023)",
        preset=_paper(ADAM_STEP, epochs=200, batch_size=128),
        preset_note="CE, Adam 1e-4, StepLR(30, 0.1), 200 epochs, batch 128 (the paper)",
    ),
    "patamia": HeadInfo(
        "ser.fusion.heads.patamia",
        "text, speech, motion-capture branches concatenated",
        "Patamia et al. (PRML 2021; arXiv 2312.01568)",
        preset=_paper(optimizer="adam", lr=1e-5, weight_decay=0.0, batch_size=5, epochs=100, schedule="none"),
        preset_note="the 2023 three-modal Adam run: lr 1e-5, batch 5, 100 epochs, no schedule (that lr was set "
        "for fine-tuning wav2vec2 and BERT end to end, so on frozen cached vectors it learns slowly: raise "
        "train.lr for the two-stage setting)",
    ),
    "early_fusion": HeadInfo(
        "ser.fusion.heads.early_fusion",
        "CLS-token transformer over projected vectors",
        _COPENHAGEN_SOURCE,
        preset=_paper(COPENHAGEN),
        preset_note=_COPENHAGEN_NOTE,
    ),
    "xattn_patch": HeadInfo(
        "ser.fusion.heads.xattn_patch",
        "cross-attention between log-mel patches and text",
        _COPENHAGEN_SOURCE,
        preset=_paper(COPENHAGEN),
        preset_note=_COPENHAGEN_NOTE,
    ),
    "resnet18": HeadInfo(
        "ser.fusion.heads.resnet18",
        "ResNet-18 on cached log-mel, SpecAugment",
        _COPENHAGEN_SOURCE,
        preset=_paper(COPENHAGEN),
        preset_note=_COPENHAGEN_NOTE,
    ),
    "cnn_bilstm": HeadInfo(
        "ser.fusion.heads.cnn_bilstm",
        "CNN + BiLSTM on cached log-mel, SpecAugment",
        _COPENHAGEN_SOURCE,
        preset=_paper(COPENHAGEN),
        preset_note=_COPENHAGEN_NOTE,
    ),
    "audio_transformer": HeadInfo(
        "ser.fusion.heads.audio_transformer",
        "transformer on log-mel frames",
        _COPENHAGEN_SOURCE,
        preset=_paper(COPENHAGEN),
        preset_note=_COPENHAGEN_NOTE,
    ),
}


def head_info(name: str) -> HeadInfo:
    """The registry record of head ``name`` (an :class:`~ser.errors.UnknownNameError` names the heads)."""
    try:
        return HEADS[name]
    except (KeyError, TypeError):
        raise unknown_name("fusion head", name, HEADS) from None


def train_preset(name: str) -> dict[str, Any]:
    """A copy of head ``name``'s paper ``train.*`` values (``{}`` for a head without a paper recipe)."""
    return dict(head_info(name).preset)


def head_module(name: str) -> ModuleType:
    """Import a head's module (a :class:`UserError` names the choices for unknown names)."""
    return importlib.import_module(head_info(name).target)


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
