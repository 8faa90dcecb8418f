"""Values read from text (YAML, ``--set``, ``-O``, search lists) checked and turned into the types a
config field declares. Standard library only, so any layer can import it at module level."""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from ser.errors import UserError


def require_int(name: str, value: Any, low: int) -> None:
    """Refuse a value that is not a whole number >= ``low`` (booleans and 2.5 included), naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be a whole number >= {low}, not {value!r}")


def require_float(name: str, value: Any, *, low: float, high: float | None = None, strict: bool = False) -> None:
    """Refuse a value that is not a finite number in [low, high) (``strict``: above ``low``), naming it."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value < high)
    if not ok:
        bounds = f"{'>' if strict else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise UserError(f"{name} must be a finite number {bounds}, not {value!r}")


_NUMBERS: tuple[type, ...] = (int, float)


def _number(value: str, kind: type, where: str) -> int | float:
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where} must be a number, not {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise UserError(f"{where} must be a whole number, not {value!r}")
        return int(number)
    return number


def _coerce_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` turned into the number(s) ``hint`` asks for, when it is a string (or a list/tuple of
    strings) and ``hint`` is int, float, an optional of them or a ``tuple[int|float, ...]``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _NUMBERS:
        return _number(value, hint, where) if isinstance(value, str) else value
    if origin in (typing.Union, types.UnionType):
        numbers = [a for a in args if a in _NUMBERS]
        if isinstance(value, str) and numbers and value.lower() not in ("none", "null"):
            return _number(value, float if float in numbers else int, where)
        return value
    if origin in (tuple, list) and isinstance(value, list | tuple):
        inner = args[0] if args else None
        if inner in _NUMBERS:
            return type(value)(
                _number(v, inner, f"{where}[{i}]") if isinstance(v, str) else v for i, v in enumerate(value)
            )
    return value


def coerce_fields(cls: type, values: dict[str, Any], section: str) -> dict[str, Any]:
    """``values`` for dataclass ``cls`` with numeric strings turned into numbers by the fields' types.

    YAML reads ``1e-4`` (no dot) as a string and ``--set head.dropout=1e-1`` arrives the same way;
    int / float / optional / ``tuple[int, ...]`` fields get numbers, anything else is left alone (the
    dataclass refuses unknown keys). ``section`` names the key prefix in messages (``train``, ``head``).
    A string that is not a number for a numeric field is a :class:`UserError`.
    """
    hints = typing.get_type_hints(cls)
    return {
        key: _coerce_value(value, hints[key], f"{section}.{key}") if key in hints else value
        for key, value in values.items()
    }


def coerce_like(values: dict[str, Any], defaults: dict[str, Any], section: str) -> dict[str, Any]:
    """``values`` with numeric strings turned into numbers where the default is a number (or None,
    for options such as a loss's ``lam`` whose default is off); for options described by a dict of
    defaults instead of a dataclass (``train.loss_options``)."""
    out = dict(values)
    for key, value in values.items():
        default = defaults.get(key, ...)
        if (
            isinstance(value, str)
            and not isinstance(default, bool)
            and (isinstance(default, int | float) or default is None)
        ):
            if default is None and value.lower() in ("none", "null"):
                out[key] = None
            else:
                out[key] = _number(value, int if type(default) is int else float, f"{section}.{key}")
    return out
