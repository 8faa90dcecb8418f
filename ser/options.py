"""Option values read from text (``-O KEY=VALUE``, ``--set``, ``--search``, YAML, ``head.*``) turned into
the types a config field declares, with one grammar for every path.

* [`coerce`][ser.options.coerce] converts a value (text, or what YAML or Python already made of it) to a type
  annotation: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Optional`` / ``Union``, ``Literal``,
  ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]`` and ``dict[K, V]``; a value that does not fit is an
  [`OptionError`][ser.options.OptionError] naming the option, the value and what the option takes.
* [`read_value`][ser.options.read_value] reads text whose type nobody declares (a submitit parameter, a head option
  before the head is known): whole numbers, numbers, the boolean words, the none words, else the
  text itself.

The words, in any letter case: true / yes / on / 1 and false / no / off / 0 are booleans; none and
null are "no value". ``1e-3`` is a number everywhere (YAML 1.1 reads it as text).

Standard library only, so any layer can import it at module level.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from ser.errors import UserError

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
NONE_WORDS = frozenset({"none", "null"})

BOOL_EXPECTED = "true or false (also yes/no, on/off, 1/0)"
INT_EXPECTED = "a whole number"
FLOAT_EXPECTED = "a number"
STR_EXPECTED = "text"
NONE_EXPECTED = "none"


class OptionError(UserError, ValueError):
    """An option value that does not fit the option's type; ``expected`` says what the type takes."""

    def __init__(self, option: str, value: object, expected: str) -> None:
        self.option, self.value, self.expected = option, value, expected
        super().__init__(f"{option} must be {expected}, not {value!r}")


class _MismatchError(Exception):
    """Internal: ``expected`` is what the annotation accepts."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def is_none_word(value: object) -> bool:
    """True for ``None`` and the none words (none, null; any case)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def coerce(value: Any, annotation: Any, name: str = "value") -> Any:
    """``value`` as ``annotation`` (see the module docstring); ``name`` is the option in the message.

    Raises:
        OptionError: the value does not fit (its message names ``name``, the value and the type).
    """
    try:
        return _coerce(value, annotation)
    except _MismatchError as err:
        raise OptionError(name, value, err.expected) from None


def expected_text(annotation: Any) -> str:
    """What ``annotation`` accepts, in the words of [`OptionError`][ser.options.OptionError] (for help texts)."""
    try:
        _coerce(object(), annotation)
    except _MismatchError as err:
        return err.expected
    return "anything"


def read_value(text: str) -> Any:
    """Text whose type nobody declares: ``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"yes"`` / ``"off"`` ->
    True / False, ``"none"`` -> None, anything else the (stripped) text."""
    stripped = text.strip()
    for cast in (int, float):
        try:
            return cast(stripped)
        except ValueError:
            continue
    word = stripped.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    if word in NONE_WORDS:
        return None
    return stripped


def read_values(value: Any) -> Any:
    """[`read_value`][ser.options.read_value] applied to every text inside lists and mappings (what YAML left as
    text)."""
    if isinstance(value, str):
        return read_value(value)
    if isinstance(value, list):
        return [read_values(item) for item in value]
    if isinstance(value, dict):
        return {key: read_values(item) for key, item in value.items()}
    return value


def split_pair(pair: str, flag: str, form: str = "KEY=VALUE") -> tuple[str, str]:
    """``"train.lr=1e-3"`` -> ``("train.lr", "1e-3")``: the one reader of ``KEY=VALUE`` arguments; a
    [`UserError`][ser.errors.UserError] names ``flag`` and the ``form`` it takes when there is no ``=`` or no key."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{flag} takes {form}, not {pair!r}")
    return key.strip(), value


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> type annotation of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_fields(cls: type, values: Mapping[str, Any], section: str = "") -> dict[str, Any]:
    """``values`` for dataclass ``cls``, each coerced to its field's type; keys that are no field are
    left for the dataclass to refuse. ``section`` prefixes the names in messages (``train.lr``)."""
    hints = field_types(cls)
    return {
        key: coerce(value, hints[key], f"{section}.{key}" if section else key) if key in hints else value
        for key, value in values.items()
    }


def annotation_of(default: Any) -> Any:
    """The type an option with this default takes: its default's type, ``float | None`` for an option
    that is off (None) by default, anything for other defaults."""
    if default is None:
        return float | None
    if isinstance(default, bool | int | float | str):
        return type(default)
    return Any


def coerce_like(values: Mapping[str, Any], defaults: Mapping[str, Any], section: str) -> dict[str, Any]:
    """``values`` coerced to the types of their defaults ([`annotation_of`][ser.options.annotation_of]), for options
    described by a dict of defaults instead of a dataclass (``train.loss_options``); unknown keys pass as given."""
    return {
        key: coerce(value, annotation_of(defaults[key]), f"{section}.{key}") if key in defaults else value
        for key, value in values.items()
    }


def _coerce(value: Any, annotation: Any) -> Any:
    if annotation is Any or annotation is object:
        return value
    if annotation is None or annotation is type(None):
        if is_none_word(value):
            return None
        raise _MismatchError(NONE_EXPECTED)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return _union(value, args)
    if origin is typing.Literal:
        return _literal(value, args)
    if origin in (list, tuple):
        return _sequence(value, origin, args)
    if origin is dict:
        return _mapping(value, args)
    if annotation is bool:
        return _as_bool(value)
    if annotation is int:
        return _as_int(value)
    if annotation is float:
        return _as_float(value)
    if annotation is str:
        return _as_str(value)
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if isinstance(value, str) and annotation.__module__ == "pathlib":
            return annotation(value)
        raise _MismatchError(f"a {annotation.__name__}")
    return value  # an annotation this grammar does not describe: the consumer checks it


def _union(value: Any, args: tuple[Any, ...]) -> Any:
    members = [arg for arg in args if arg is not type(None)]
    optional = len(members) < len(args)
    if optional and is_none_word(value):
        return None
    problems: list[str] = []
    for member in members:
        try:
            return _coerce(value, member)
        except _MismatchError as err:
            problems.append(err.expected)
    raise _MismatchError(" or ".join(dict.fromkeys(problems + ([NONE_EXPECTED] if optional else []))))


def _literal(value: Any, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
    for choice in choices:  # text (or a number YAML made of it) naming a choice
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip() == str(choice):
            return choice
    if value is None and "none" in choices:  # the none word read without a type
        return "none"
    raise _MismatchError("one of " + ", ".join(str(choice) for choice in choices))


def _split_text(text: str) -> list[str]:
    """``"0,1,2"`` or ``"[0, 1, 2]"`` -> ``["0", "1", "2"]`` (empty parts dropped: ``""`` -> ``[]``)."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return [part.strip() for part in inner.split(",") if part.strip()]


def _sequence(value: Any, origin: type, args: tuple[Any, ...]) -> Any:
    items = _split_text(value) if isinstance(value, str) else value
    fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
    inner = [args[0]] if args and not fixed else list(args)
    what = "a list" if origin is list else "a tuple"
    if not isinstance(items, list | tuple):
        raise _MismatchError(_sequence_expected(what, inner, fixed))
    if fixed and args and len(items) != len(args):
        raise _MismatchError(_sequence_expected(what, inner, fixed))
    try:
        if fixed and args:
            converted = [_coerce(item, arg) for item, arg in zip(items, args, strict=True)]
        else:
            element = inner[0] if inner else Any
            if element is Any and isinstance(value, str):  # parts of a text list with no declared type
                converted = [read_value(item) for item in items]
            else:
                converted = [_coerce(item, element) for item in items]
    except _MismatchError:
        raise _MismatchError(_sequence_expected(what, inner, fixed)) from None
    return type(items)(converted) if isinstance(value, list | tuple) else origin(converted)


def _sequence_expected(what: str, inner: list[Any], fixed: bool) -> str:
    if not inner or inner[0] is Any:
        return f"{what} (e.g. 1,2,3)"
    if fixed:
        return f"{what} of {len(inner)} values ({'; '.join(expected_text(arg) for arg in inner)})"
    return f"{what} of values (e.g. 1,2,3), each {expected_text(inner[0])}"


def _mapping(value: Any, args: tuple[Any, ...]) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _MismatchError("a mapping (KEY: VALUE)")
    if not args:
        return dict(value)
    key_type, value_type = args
    try:
        return {_coerce(key, key_type): _coerce(item, value_type) for key, item in value.items()}
    except _MismatchError as err:
        raise _MismatchError(f"a mapping (KEY: VALUE) whose values are each {err.expected}") from None


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
    raise _MismatchError(BOOL_EXPECTED)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _MismatchError(INT_EXPECTED)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                value = float(value.strip())
            except ValueError:
                raise _MismatchError(INT_EXPECTED) from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _MismatchError(INT_EXPECTED)


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _MismatchError(FLOAT_EXPECTED)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _MismatchError(FLOAT_EXPECTED)


def _as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # YAML (or an untyped reading) made a number of it: ``revision: 1234``
    raise _MismatchError(STR_EXPECTED)


def require_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """Refuse a value that is not a whole number in [low, high] (booleans and 2.5 included), naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f">= {low}" + ("" if high is None else f" and <= {high}")
        raise UserError(f"{name} must be a whole number {bounds}, not {value!r}")


def require_float(name: str, value: Any, *, low: float, high: float | None = None, strict: bool = False) -> None:
    """Refuse a value that is not a finite number in [low, high) (``strict``: above ``low``), naming it."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value < high)
    if not ok:
        bounds = f"{'>' if strict else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise UserError(f"{name} must be a finite number {bounds}, not {value!r}")
