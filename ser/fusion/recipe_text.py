"""Recipes and fidelity tables as text: what ``ser fusion show`` and ``ser fit`` print and the docs pages hold.

Everything here is rendered from the registry records (``ser.fusion.heads.HEADS``), so the terminal and
the documentation say the same thing. Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ser.fusion.heads import head_info, head_recipe
from ser.fusion.recipes import DEFAULT_RECIPE, fidelity_markdown, fidelity_rows, format_value


def _pairs(values: Any) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in values.items())


def recipe_lines(fusion: str, name: str) -> list[str]:
    """The recipe ``name`` of head ``fusion`` as indented lines (every value it sets)."""
    recipe = head_recipe(fusion, name)
    default = " (the default)" if name == DEFAULT_RECIPE else ""
    lines = [f"recipe {name}{default}: {recipe.note}" if recipe.note else f"recipe {name}{default}"]
    lines.append(f"  train: {_pairs(recipe.train) or 'the TrainConfig defaults'}")
    if recipe.head:
        lines.append(f"  head: {_pairs(recipe.head)}")
    if recipe.inputs:
        lines.append("  inputs: " + "; ".join(f"{m} {options}" for m, options in recipe.inputs.items()))
    else:
        lines.append("  inputs: the stores' recommended views")
    if recipe.extractors:
        lines.append("  the original read: " + "; ".join(f"{m} {' or '.join(f)}" for m, f in recipe.extractors.items()))
    for loss in dict.fromkeys([*recipe.loss_options, *recipe.loss_train]):
        parts = [_pairs(recipe.loss_train.get(loss, {}))]
        if loss in recipe.loss_options:
            parts.append(f"loss_options {_pairs(recipe.loss_options[loss])}")
        lines.append(f"  with train.loss={loss}: " + "; ".join(p for p in parts if p))
    for case in recipe.validation:
        lines.append(f"  validation stands in: {case}")
    return lines


def _defaults() -> dict[str, Any]:
    from ser.fusion.config import TrainConfig

    return {f"train.{key}": value for key, value in asdict(TrainConfig()).items()}


def fidelity_table(fusion: str) -> list[tuple[str, str, str, str, str]]:
    """``(aspect, original, paper, ser, why)`` rows of head ``fusion``."""
    info = head_info(fusion)
    return fidelity_rows(info.recipes, info.fidelity, _defaults())


def fidelity_lines(fusion: str) -> list[str]:
    """The fidelity table as plain text, one block per aspect."""
    lines = []
    for aspect, original, paper, ser, why in fidelity_table(fusion):
        lines.append(f"- {aspect}")
        lines.append(f"    original: {original}")
        lines.append(f"    paper:    {paper.replace('`', '')}")
        lines.append(f"    ser:      {ser.replace('`', '')}")
        if why:
            lines.append(f"    why:      {why}")
    return lines


def fidelity_page(fusion: str) -> list[str]:
    """The fidelity table as Markdown lines (the head's documentation page)."""
    return fidelity_markdown(fidelity_table(fusion))
