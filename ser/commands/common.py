"""Helpers shared by the CLI command modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


BOOLEAN_WORDS = {"true": True, "yes": True, "false": False, "no": False}
"""Option values read as booleans (any letter case)."""


def parse_options(pairs: list[str] | None) -> dict[str, object]:
    """``["k=10", "test_split=test2", "normalize=False"]`` -> ``{"k": 10, "test_split": "test2", "normalize": False}``.

    Ints and floats are parsed, and true/false/yes/no (any case) become booleans; anything else
    stays a string (the consumer converts or refuses it by the type it expects).
    """
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        parsed: object = value
        word = value.strip().lower()
        if word in BOOLEAN_WORDS:
            options[key.strip()] = BOOLEAN_WORDS[word]
            continue
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        options[key.strip()] = parsed
    return options
