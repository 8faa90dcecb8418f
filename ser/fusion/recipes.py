"""Recipes: how an experiment runs a head, kept apart from the head's layers.

A head module holds the layers; its registry record (``ser.fusion.heads.HEADS``) holds its recipes:

* ``paper``: the original experiment as its code ran it: the input views (and raw or z-scored
  inputs), batch size, optimiser(s) and schedules, loss forms and weights at the original's scale,
  augmentation and checkpoint rule. The one deviation allowed: where the original selected on its
  test set (or had no test set), the protocol's validation rows stand in
  ([`Recipe.validation`][ser.fusion.recipes.Recipe.validation] lists each case).
* ``ser``: the harmonised recipe for fair comparisons across heads: each head's paper optimiser and
  epochs at batch 32 (or the paper's when larger), the store's recommended views, z-scored pooled
  inputs, the checkpoint of the best validation UA, auxiliary losses weighted to the size of the
  cross-entropy.

``ser fit --recipe paper|ser`` (``recipe:`` in a config or a grid) starts from one of them; an explicit
value (``--set``, YAML, a view on the command line) overrides it and is logged as a departure
([`ser.fusion.departures`][ser.fusion.departures]). Precedence: TrainConfig defaults < recipe < YAML < flags <
``--set``.

Each head also has a fidelity table ([`Fidelity`][ser.fusion.recipes.Fidelity] rows): aspect | original (repository,
file:line) | ``paper`` | ``ser`` | why they differ. The ``paper`` and ``ser`` cells are rendered
from the recipe records ([`fidelity_rows`][ser.fusion.recipes.fidelity_rows]), so a value is written once.

Torch-free (``ser fusion show`` and ``ser ablate`` read recipes without importing torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

RECIPES = ("ser", "paper")
"""Recipe names, in the order ``ser fusion show`` prints them."""
DEFAULT_RECIPE = "ser"
"""What ``ser fit --fusion NAME`` runs without ``--recipe`` (the fit guide says why)."""


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Recipe:
    """One way of running a head: values for ``train.*``, ``head.*``, the inputs and the loss options."""

    train: Mapping[str, Any] = field(default_factory=dict)
    """``train.*`` values (everything else keeps the [`TrainConfig`][ser.fusion.config.TrainConfig] default)."""
    head: Mapping[str, Any] = field(default_factory=dict)
    """``head.*`` values (everything else keeps the head config's default)."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """Modality -> the view options the recipe reads (``stat=pooler,layer=last``); a modality not
    named here reads the store's recommended view."""
    extractors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Modality -> the extractor families (``ser extract --model``) whose features the original read;
    a store of another family is logged as a departure."""
    loss_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Loss name -> ``train.loss_options`` the recipe gives that loss (the original's form and scale)."""
    loss_train: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Loss name -> ``train.*`` values that differ with that loss (an original whose configs changed the
    optimiser with the loss)."""
    note: str = ""
    """One paragraph: what the recipe is and where it comes from."""
    validation: tuple[str, ...] = ()
    """Where the original chose on its test set or had none, and the protocol's validation stands in."""

    def __post_init__(self) -> None:
        for name in ("train", "head", "inputs", "extractors"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("loss_options", "loss_train"):
            object.__setattr__(self, name, _frozen({k: _frozen(v) for k, v in getattr(self, name).items()}))

    def train_for(self, loss: str | None) -> dict[str, Any]:
        """The ``train.*`` values with those of ``loss`` ([`loss_train`][ser.fusion.recipes.Recipe.loss_train]) on top
        (a copy)."""
        return {**self.train, **self.loss_train.get(loss or "", {})}

    def value(self, key: str) -> Any:
        """The recipe's value of a dotted key (``train.lr``, ``head.dropout``, ``inputs.text``), or
        [`UNSET`][ser.fusion.recipes.UNSET]."""
        section, _, name = key.partition(".")
        source: Mapping[str, Any] = {"train": self.train, "head": self.head, "inputs": self.inputs}.get(section, {})
        return source.get(name, UNSET)


UNSET: Any = object()
"""What [`Recipe.value`][ser.fusion.recipes.Recipe.value] returns for a key the recipe does not name."""


@dataclass(frozen=True)
class Fidelity:
    """One row of a head's fidelity table."""

    aspect: str
    """What the row is about (optimiser, batch size, inputs, ...)."""
    original: str
    """What the original code does, with its repository and file:line."""
    keys: tuple[str, ...] = ()
    """Dotted recipe keys whose values fill the ``paper`` and ``ser`` cells (``train.batch_size``)."""
    paper: str = ""
    """Cell text for ``paper`` where the keys do not say it (shown before the keys' values)."""
    ser: str = ""
    """Cell text for ``ser`` likewise."""
    why: str = ""
    """Why ``paper`` and ``ser`` differ, or what a cache cannot reproduce."""


def recipe_cell(recipe: Recipe | None, row: Fidelity, text: str, defaults: Mapping[str, Any]) -> str:
    """The ``paper`` or ``ser`` cell of ``row``: ``text``, then ``key=value`` for each of its keys (the
    default in ``defaults`` where the recipe names none)."""
    if recipe is None:
        return "—"
    parts = [text] if text else []
    for key in row.keys:
        value = recipe.value(key)
        if value is UNSET:
            value = defaults.get(key, UNSET)
        if value is UNSET:
            value = "recommended view" if key.startswith("inputs.") else "default"
        parts.append(f"`{key.partition('.')[2]}={format_value(value)}`")
    return "; ".join(parts) if parts else "—"


def format_value(value: Any) -> str:
    """A recipe value as a short text: lists without spaces, floats as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def fidelity_rows(
    recipes: Mapping[str, Recipe], rows: tuple[Fidelity, ...], defaults: Mapping[str, Any]
) -> list[tuple[str, str, str, str, str]]:
    """``(aspect, original, paper, ser, why)`` per row, the cells rendered from ``recipes``."""
    return [
        (
            row.aspect,
            row.original,
            recipe_cell(recipes.get("paper"), row, row.paper, defaults),
            recipe_cell(recipes.get("ser"), row, row.ser, defaults),
            row.why,
        )
        for row in rows
    ]


def fidelity_markdown(rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    """A fidelity table as Markdown lines (pipes inside cells escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| aspect | original | `paper` | `ser` | why they differ |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell(part) for part in row) + " |" for row in rows]
    return lines
