"""Helpers shared by the CLI command modules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import typer


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's "bad input" exceptions into a one-line message and exit status 2.

    Programming errors (anything else) still raise with a traceback.
    """
    from ser.errors import WRITE_ERRNOS, UserError, write_failure

    try:
        yield
    except (UserError, FileNotFoundError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        typer.secho(
            f"error: {write_failure(err, err.filename or '?', 'files written before are kept')}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2) from err


def parse_options(
    pairs: list[str] | None, types: Mapping[str, Any] | None = None, *, flag: str = "-O"
) -> dict[str, Any]:
    """``["k=10", "test_split=test2"]`` -> ``{"k": "10", "test_split": "test2"}``: the values as text, for a
    consumer that converts them by the types it declares ([`ser.options.coerce`][ser.options.coerce]).

    ``types`` (option name -> type annotation) converts here: every value by its option's type, and an
    option outside ``types`` is refused naming the accepted ones. For options whose type nobody
    declares (submitit parameters), pass ``types=UNTYPED``: values are read by
    [`ser.options.read_value`][ser.options.read_value] (``"1"`` -> 1, ``"on"`` -> True, ``"none"`` -> None).
    """
    from ser.errors import unknown_name
    from ser.options import coerce, read_value, split_pair

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, value = split_pair(pair, flag)
        if types is UNTYPED:
            options[key] = read_value(value)
        elif types is not None:
            if key not in types:
                raise unknown_name(f"{flag} option", key, types)
            options[key] = coerce(value, types[key], f"{flag} {key}")
        else:
            options[key] = value
    return options


UNTYPED: Mapping[str, Any] = MappingProxyType({})
"""``parse_options(pairs, UNTYPED)``: read values without a declared type
([`ser.options.read_value`][ser.options.read_value])."""


def default_of(owner: Any, name: str) -> Any:
    """The default of ``name`` in ``owner``: a dataclass field (a fresh copy for a ``default_factory``)
    or a keyword parameter of a function, so a typer option shows and uses the library's default
    instead of a copy of it."""
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(owner):
        owner_name = (owner if isinstance(owner, type) else type(owner)).__name__
        for field in dataclasses.fields(owner):
            if field.name == name:
                if field.default is not dataclasses.MISSING:
                    return field.default
                if field.default_factory is not dataclasses.MISSING:
                    return field.default_factory()
                raise TypeError(f"{owner_name}.{name} has no default")
        raise TypeError(f"{owner_name} has no field {name!r}")
    parameter = inspect.signature(owner).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise TypeError(f"{getattr(owner, '__qualname__', owner)} has no parameter {name!r} with a default")
    return parameter.default


def choices_help(choices: Iterable[object]) -> str:
    """``"a, b or c"`` for a help text listing a registry's names."""
    names = [str(choice) for choice in choices]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
