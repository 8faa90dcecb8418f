"""Where a fit departs from its recipe, and the inputs a recipe implies (``ser.fusion.recipes``).

A departure is any value the recipe names that the fit does not use: an explicit ``train.*`` or
``head.*`` value, an explicit view, a store of another extractor family than the original read. A
fit logs each one and records the list in ``config.yaml`` and ``metrics.json``, so a number trained
under ``--recipe paper`` with a departure is never mistaken for the paper's experiment.

Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ser.fusion.heads import head_recipe
from ser.fusion.recipes import Recipe, format_value
from ser.options import coerce_fields
from ser.views import join_view, parse_view, split_options, split_view

if TYPE_CHECKING:
    from ser.fusion.config import FitConfig
    from ser.fusion.data import FusionData


def config_departures(cfg: FitConfig) -> list[str]:
    """The recipe's ``train.*``, ``head.*`` and view values that ``cfg`` sets otherwise."""
    from ser.fusion.config import TrainConfig

    recipe = head_recipe(cfg.fusion, cfg.recipe)
    wanted = recipe.train_for(cfg.train.loss)
    found: list[str] = []
    for key, value in coerce_fields(TrainConfig, dict(wanted), "train").items():
        actual = getattr(cfg.train, key)
        if key == "batch_size" and cfg.pinned is not None:
            actual = cfg.pinned.batch_size  # the cell's own; the halving is a departure of its own below
        if actual != value:
            found.append(_departure(f"train.{key}", actual, value, cfg.recipe))
    found += halved_batch_departures(cfg)
    for key, value in recipe.head.items():
        actual = cfg.head.get(key, value)
        if not _same(actual, value):
            found.append(_departure(f"head.{key}", actual, value, cfg.recipe))
    for modality, options in recipe.inputs.items():
        text = getattr(cfg, modality, None)
        if not text:
            continue
        given = split_view(text)[1]
        if given and not _view_matches(given, split_options(options)):
            found.append(f"--{modality} reads {_options(given)}; the {cfg.recipe} recipe reads {options}")
    return found


def halved_batch_departures(cfg: FitConfig) -> list[str]:
    """The batch size ``ser ablate`` halved (``FitConfig.pinned``) because the cell ran out of GPU memory at
    each size above the one used, e.g. ``train.batch_size 32 -> 8: out of GPU memory at 32, 16 (ser ablate
    halved it)``; empty when the fit trains at its cell's batch size."""
    if cfg.pinned is None or cfg.pinned.batch_size == cfg.train.batch_size:
        return []
    tried = []
    size = cfg.pinned.batch_size
    while size > cfg.train.batch_size:
        tried.append(str(size))
        size = max(1, size // 2)
    return [
        f"train.batch_size {cfg.pinned.batch_size} -> {cfg.train.batch_size}: out of GPU memory at "
        f"{', '.join(tried)} (ser ablate halved it)"
    ]


def input_departures(recipe: Recipe, name: str, data: FusionData) -> list[str]:
    """Inputs read from a store of another extractor family (or ``family:preset``) than the recipe's
    original read."""
    found = []
    for modality, families in recipe.extractors.items():
        if modality not in data.modalities:
            continue
        extractor = data.modalities[modality].provenance.get("extractor") or {}
        family, preset = extractor.get("name"), extractor.get("preset")
        if family not in families and f"{family}:{preset}" not in families:
            found.append(
                f"--{modality} holds {family}:{preset} features; the {name} recipe's original read "
                f"{' or '.join(families)}"
            )
    return found


def recipe_loss_options(recipe: Recipe, loss: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``train.loss_options``: the recipe's options for ``loss`` under those the fit gives."""
    return {**recipe.loss_options.get(loss, {}), **given}


def silence_floor(records: Mapping[str, Any]) -> float | None:
    """The value of silence in a log-mel store (what padded frames should hold), from its extractor
    record: ``-top_db`` for the dB-re-max (``librosa``) preset, ``log(log_offset)`` for the natural log
    one; None for a store of another extractor."""
    extractor = records.get("extractor") or {}
    if extractor.get("name") != "logmel":
        return None
    config = extractor.get("config") or {}
    if config.get("log") == "db_max":
        return -float(config.get("top_db", 80.0))
    return math.log(float(config.get("log_offset", 1e-6)))


def _departure(key: str, actual: Any, wanted: Any, recipe: str) -> str:
    return f"{key}={format_value(actual)} (the {recipe} recipe: {format_value(wanted)})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _view_matches(given: dict[str, str], wanted: dict[str, str]) -> bool:
    """A view given with options matches the recipe's when it names the same options (a bare ``seq``
    in the recipe accepts any stored layer)."""
    a = parse_view(join_view("store", given)).options()
    b = parse_view(join_view("store", wanted)).options()
    if "seq" in b and not b["seq"]:
        return "seq" in a
    return a == b


def _options(options: dict[str, str]) -> str:
    return join_view("", options).lstrip(":")
