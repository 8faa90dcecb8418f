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
  - optional ``inputs["speaker"]`` ``(B,)`` int64 speaker index (part of the contract; no head reads it
    yet: SER-Fuse's "speaker" input is an ECAPA-TDNN embedding, an ordinary pooled ``audio`` vector).

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
fits them. The registry below holds one [`HeadInfo`][ser.fusion.heads.HeadInfo] record per head: its module (imported
only when the head is built, so listing heads imports no torch), description, paper, recipes (``paper`` and ``ser``, see
``ser.fusion.recipes``; the paper heads' records are in ``ser.fusion.heads.papers``) and fidelity table.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from ser.errors import UserError, unknown_name
from ser.fusion.heads import papers
from ser.fusion.recipes import RECIPES, Fidelity, Recipe
from ser.options import coerce_fields

ENGINES = ("torch", "sklearn")


@dataclass(frozen=True)
class HeadInfo:
    """One registry entry: everything ``ser`` knows about a head without importing it."""

    target: str
    """``module`` holding ``build``, ``INPUTS`` and the config dataclass."""
    description: str
    """One line on the head (``ser fusion list``)."""
    source: str
    """The paper (or project) the head reproduces."""
    engine: str = "torch"
    """``torch`` (an ``nn.Module`` trained by ``ser.fusion.train``) or ``sklearn`` (a classic
    estimator trained by ``ser.fusion.classic``)."""
    recipes: Mapping[str, Recipe] = field(default_factory=lambda: MappingProxyType({"ser": Recipe()}))
    """``ser`` (every head) and ``paper`` (heads that reproduce a paper): see ``ser.fusion.recipes``."""
    fidelity: tuple[Fidelity, ...] = ()
    """The head's fidelity table: how the original ran, against both recipes."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipes", MappingProxyType(dict(self.recipes)))
        if self.engine not in ENGINES:
            raise ValueError(f"head engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        unknown = sorted(set(self.recipes) - set(RECIPES))
        if "ser" not in self.recipes or unknown:
            raise ValueError(f"a head has a ser recipe and may have a paper one, not {sorted(self.recipes)}")


_COPENHAGEN_SOURCE = "Copenhagen SER project (2025)"


def _paper(entry: papers.Entry) -> dict[str, Any]:
    """A paper head's recipes and fidelity rows as ``HeadInfo`` fields."""
    recipes, fidelity = entry
    return {"recipes": recipes, "fidelity": fidelity}


_CLASSIC = {
    "ser": Recipe(
        train={"refit": True},
        note="the grid point is chosen on validation, then refitted on "
        "train + validation, as the classic rows of SER papers train on every training speaker",
    )
}

HEADS: dict[str, HeadInfo] = {
    "mlp": HeadInfo(
        "ser.fusion.heads.mlp",
        "unimodal or concatenated pooled vectors -> MLP (baseline)",
        "baseline",
        recipes={
            "ser": Recipe(
                note="our baseline, no paper: the TrainConfig defaults (AdamW 1e-3, weight decay 1e-2, batch 32, "
                "early stopping after 20 epochs without a better validation UA)"
            )
        },
    ),
    "logreg": HeadInfo(
        "ser.fusion.heads.logreg",
        "class-balanced logistic regression, C chosen on validation",
        "classic baseline (scikit-learn)",
        engine="sklearn",
        recipes=_CLASSIC,
    ),
    "svm": HeadInfo(
        "ser.fusion.heads.svm",
        "class-balanced SVM (RBF or linear), C and gamma chosen on validation",
        "classic baseline (scikit-learn)",
        engine="sklearn",
        recipes=_CLASSIC,
    ),
    "server": HeadInfo(
        "ser.fusion.heads.server",
        "text pooler + summed VGGish, concatenation, linear head",
        "Pham et al., SERVER (ICIIT 2023)",
        **_paper(papers.SERVER),
    ),
    "mser3": HeadInfo(
        "ser.fusion.heads.mser3",
        "token self-attention + joint text/audio sequence attention",
        "Tran et al., 3M-SER (INISCOM 2023)",
        **_paper(papers.MSER3),
    ),
    "mser4": HeadInfo(
        "ser.fusion.heads.mser4",
        "3M-SER with pooling choice and feature losses",
        "Tran et al., 4M-SER",
        **_paper(papers.MSER4),
    ),
    "memocmt": HeadInfo(
        "ser.fusion.heads.memocmt",
        "two cross-attentions, min/mean/max/first pooling, masked",
        "Tran et al., MemoCMT (Scientific Reports 2025)",
        **_paper(papers.MEMOCMT),
    ),
    "fleser": HeadInfo(
        "ser.fusion.heads.fleser",
        "modal encoders, fuzzy membership, alpha-weighted fusion",
        "Nguyen et al., FleSER (EAAI 2026)",
        **_paper(papers.FLESER),
    ),
    "serfuse": HeadInfo(
        "ser.fusion.heads.serfuse",
        "text CLS + ECAPA-TDNN speaker embedding, concatenation",
        "Pham et al., SER-Fuse (SOICT 2023)",
        **_paper(papers.SERFUSE),
    ),
    "patamia": HeadInfo(
        "ser.fusion.heads.patamia",
        "text, speech, motion-capture branches concatenated",
        "Patamia et al. (PRML 2021; arXiv 2312.01568)",
        **_paper(papers.PATAMIA),
    ),
    "early_fusion": HeadInfo(
        "ser.fusion.heads.early_fusion",
        "CLS-token transformer over projected vectors",
        _COPENHAGEN_SOURCE,
        **_paper(papers.EARLY_FUSION),
    ),
    "xattn_patch": HeadInfo(
        "ser.fusion.heads.xattn_patch",
        "cross-attention between log-mel patches and text",
        _COPENHAGEN_SOURCE,
        **_paper(papers.XATTN_PATCH),
    ),
    "resnet18": HeadInfo(
        "ser.fusion.heads.resnet18",
        "ResNet-18 on cached log-mel, SpecAugment",
        _COPENHAGEN_SOURCE,
        **_paper(papers.RESNET18),
    ),
    "cnn_bilstm": HeadInfo(
        "ser.fusion.heads.cnn_bilstm",
        "CNN + BiLSTM on cached log-mel, SpecAugment",
        _COPENHAGEN_SOURCE,
        **_paper(papers.CNN_BILSTM),
    ),
    "audio_transformer": HeadInfo(
        "ser.fusion.heads.audio_transformer",
        "transformer on log-mel frames",
        _COPENHAGEN_SOURCE,
        **_paper(papers.AUDIO_TRANSFORMER),
    ),
}


def head_info(name: str) -> HeadInfo:
    """The registry record of head ``name`` (an [`UnknownNameError`][ser.errors.UnknownNameError] names the heads)."""
    try:
        return HEADS[name]
    except (KeyError, TypeError):
        raise unknown_name("fusion head", name, HEADS) from None


def head_recipe(name: str, recipe: str) -> Recipe:
    """Head ``name``'s recipe ``recipe`` (``ser`` or ``paper``); a [`UserError`][ser.errors.UserError] says what
    exists."""
    info = head_info(name)
    if recipe not in RECIPES:
        raise UserError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
    if recipe not in info.recipes:
        raise UserError(f"head {name} reproduces no paper ({info.source}), so it has no paper recipe; use --recipe ser")
    return info.recipes[recipe]


def train_preset(name: str, recipe: str = "ser", loss: str | None = None) -> dict[str, Any]:
    """A copy of the ``train.*`` values of head ``name``'s recipe (with those of ``loss``, if it changes them)."""
    return head_recipe(name, recipe).train_for(loss)


def head_module(name: str) -> ModuleType:
    """Import a head's module (a [`UserError`][ser.errors.UserError] names the choices for unknown names)."""
    return importlib.import_module(head_info(name).target)


def torch_heads() -> list[str]:
    """Names of the neural heads (every head but the classic scikit-learn baselines)."""
    return [name for name, info in HEADS.items() if info.engine == "torch"]


def resolve_head_config(name: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check ``overrides`` against head ``name``'s config dataclass before anything is trained.

    Returns ``(options, resolved)``: the overrides with numeric strings coerced by the field types
    (what ``build`` gets) and every field of the resulting config (what ``config.yaml`` records).
    Unknown or invalid options are a [`UserError`][ser.errors.UserError] naming the accepted fields.
    """
    module = head_module(name)
    options = coerce_fields(module.CONFIG, dict(overrides), "head")
    try:
        config = module.CONFIG(**options)
    except (TypeError, ValueError) as err:
        fields = ", ".join(module.CONFIG.__dataclass_fields__)
        raise UserError(f"fusion head {name}: {err} (head options: {fields})") from None
    check_head_ranges(config)
    return options, asdict(config)


MAX_WIDTH = 2**16
"""Largest whole-number head option (a width, layer or head count, a frame count): a ``[1e8]`` layer is
refused here instead of trying to allocate gigabytes of weights."""


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``low`` .. ``high``, each end open or closed; always finite."""

    low: float = -math.inf
    """The lowest value (or the bound above which values lie, with ``low_open``)."""
    high: float = math.inf
    """The highest value (or the bound below which values lie, with ``high_open``)."""
    low_open: bool = False
    """True: ``low`` itself is outside the range."""
    high_open: bool = False
    """True: ``high`` itself is outside the range."""

    def holds(self, value: float) -> bool:
        """True when ``value`` is finite and inside the range."""
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return math.isfinite(value) and above and below

    def text(self) -> str:
        """The range in words (``a finite number >= 0 and < 1``)."""
        parts = [f"{'>' if self.low_open else '>='} {self.low:g}"] if math.isfinite(self.low) else []
        parts += [f"{'<' if self.high_open else '<='} {self.high:g}"] if math.isfinite(self.high) else []
        return " and ".join(parts)


INT_RANGE = Range(low=1, high=MAX_WIDTH)
"""Every whole-number head option: widths, layer, head and frame counts are at least 1 (a zero-width
layer "trains" to chance) and at most ``MAX_WIDTH``."""
FLOAT_RANGE = Range()
"""A number option absent from ``FLOAT_RANGES``: any finite value (e.g. a padding value)."""
FLOAT_RANGES: dict[str, Range] = {
    "dropout": Range(low=0.0, high=1.0, high_open=True),
    "alpha": Range(low=0.0, high=1.0),
    "C": Range(low=0.0, low_open=True),
    "gamma": Range(low=0.0, low_open=True),
}
"""Number head options by field name (a name ending in ``dropout`` is a dropout rate); the type of each
field (``int`` or ``float``, alone or in a tuple / list, optional or not) picks the range, so a head
declares nothing more than its field types."""


def _numbers(annotation: Any) -> set[type]:
    """The number types (int, float) an annotation holds, at any depth (``tuple[int, ...]`` -> {int})."""
    if annotation in (int, float):
        return {annotation}
    found: set[type] = set()
    for arg in typing.get_args(annotation):
        found |= _numbers(arg)
    return found


def _scalars(value: Any) -> list[Any]:
    """The numbers in a value, flattened (``(256, 64)`` -> [256, 64]); text, booleans and None left out."""
    if isinstance(value, list | tuple):
        return [item for part in value for item in _scalars(part)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def field_range(name: str, annotation: Any) -> tuple[Range, str] | None:
    """The range of head field ``name`` (and how its values are named), from its type and ``FLOAT_RANGES``;
    None for a field without numbers."""
    kinds = _numbers(annotation)
    if float in kinds:
        key = "dropout" if name.endswith("dropout") else name
        return FLOAT_RANGES.get(key, FLOAT_RANGE), "a finite number"
    if int in kinds:
        return INT_RANGE, "a whole number"
    return None


def check_head_ranges(config: Any) -> None:
    """Refuse, in one line naming ``head.NAME``, a head config field holding a number outside its range
    ([`field_range`][ser.fusion.heads.field_range]): NaN / inf anywhere, a dropout outside [0, 1), a width
    below 1 or above ``MAX_WIDTH``."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        found = field_range(item.name, hints[item.name])
        if found is None:
            continue
        bounds, kind = found
        value = getattr(config, item.name)
        bad = [number for number in _scalars(value) if not bounds.holds(number)]
        if bad:
            each = "every value of " if isinstance(value, list | tuple) else ""
            expected = " ".join(part for part in (kind, bounds.text()) if part)
            raise UserError(f"{each}head.{item.name} must be {expected}, not {value!r}")
