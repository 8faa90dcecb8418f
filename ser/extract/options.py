"""Family options (``-O KEY=VALUE``) converted to, and checked against, the config dataclass field types.

The CLI hands option values over as text and library callers pass Python values; either way each
value is converted by [`ser.options.coerce`][ser.options.coerce] (the one option grammar) to the type of the config
field it sets, or refused with a message naming the option and what it accepts: ``-O normalize=maybe``
fails instead of being stored as a truthy string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from ser.extract.base import ExtractorError
from ser.options import FALSE_WORDS, NONE_WORDS, TRUE_WORDS, OptionError, coerce, field_types

__all__ = ["FALSE_WORDS", "NONE_WORDS", "TRUE_WORDS", "coerce_options", "coerce_value"]


class _MismatchError(ValueError):
    """A value that does not fit a type; the text says what the type accepts."""


def coerce_options(
    family: str, config_cls: type, options: Mapping[str, Any], allowed: Collection[str] | None = None
) -> dict[str, Any]:
    """``options`` with every value converted to the type of ``config_cls``'s field of that name.

    ``allowed`` (default: every field) are the options a user may set. Raises
    [`ExtractorError`][ser.extract.base.ExtractorError] for unknown options and values that do not fit.
    """
    hints = field_types(config_cls)
    names = set(allowed) if allowed is not None else {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ExtractorError(f"{family}: unknown options {unknown}; accepted: {sorted(names)}")
    converted: dict[str, Any] = {}
    for key, value in options.items():
        try:
            converted[key] = coerce(value, hints[key], key)
        except OptionError as err:
            raise ExtractorError(f"{family}: -O {key}={value} is not valid: {err}") from None
    return converted


def coerce_value(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` ([`ser.options.coerce`][ser.options.coerce]); a value that does not fit raises a
    ``ValueError`` whose text is what the annotation accepts."""
    try:
        return coerce(value, annotation)
    except OptionError as err:
        raise _MismatchError(err.expected) from None
