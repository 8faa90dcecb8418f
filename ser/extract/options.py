"""Family options (``-O KEY=VALUE``) converted to, and checked against, the config dataclass field types.

The CLI hands options over as parsed by ``parse_options`` (ints, floats and booleans already
converted, everything else a string), and library callers pass Python values. Either way each
value is converted to the type of the config field it sets, or refused with a message naming the
option and what it accepts: ``-O normalize=maybe`` fails instead of being stored as a truthy string.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

from ser.extract.base import ExtractorError

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
NONE_WORDS = frozenset({"none", "null"})


class _MismatchError(ValueError):
    """A value that does not fit a type; the text says what the type accepts."""


def coerce_options(
    family: str, config_cls: type, options: Mapping[str, Any], allowed: Collection[str] | None = None
) -> dict[str, Any]:
    """``options`` with every value converted to the type of ``config_cls``'s field of that name.

    ``allowed`` (default: every field) are the options a user may set. Raises
    :class:`ExtractorError` for unknown options and values that do not fit.
    """
    hints = typing.get_type_hints(config_cls)
    names = set(allowed) if allowed is not None else {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ExtractorError(f"{family}: unknown options {unknown}; accepted: {sorted(names)}")
    converted: dict[str, Any] = {}
    for key, value in options.items():
        try:
            converted[key] = coerce_value(value, hints[key])
        except _MismatchError as err:
            raise ExtractorError(f"{family}: -O {key}={value} is not valid: {key} must be {err}") from None
    return converted


def coerce_value(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (bool, int, float, str, Literal[...] or an Optional/Union of those)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        if optional and (value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)):
            return None
        problems = []
        for member in members:
            try:
                return coerce_value(value, member)
            except _MismatchError as err:
                problems.append(str(err))
        raise _MismatchError(" or ".join(problems + (["none"] if optional else [])))
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if value == choice or (isinstance(value, str | int | float) and str(value) == str(choice)):
                return choice
        raise _MismatchError("one of " + ", ".join(str(c) for c in choices))
    if annotation is bool:
        return _as_bool(value)
    if annotation is int:
        return _as_int(value)
    if annotation is float:
        return _as_float(value)
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # parse_options read "123" as a number
        raise _MismatchError("text")
    raise TypeError(f"coerce_value: unsupported annotation {annotation!r}")  # a bug in a config class


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _MismatchError("true or false (also yes/no, on/off, 1/0)")


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _MismatchError("an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _MismatchError("an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _MismatchError("a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _MismatchError("a number")
