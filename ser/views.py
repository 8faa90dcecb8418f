"""The ``STORE[:key=value,...]`` grammar that names how one modality is read from a cache store.

``feats.h5`` (no view: the store's recommended one), ``feats.h5:stat=mean,layer=6`` (a pooled
statistic of one layer; ``layer=avg`` / ``layer=weighted`` over all layers), ``feats.h5:seq=layer_12``
(a stored sequence; ``seq`` alone: the only or last one). The store is everything before the first
colon, so a store path may not hold one.

This module is the one reader and writer of that text: [`split_view`][ser.views.split_view] /
[`join_view`][ser.views.join_view] keep the options as written (grid files edit them),
[`parse_view`][ser.views.parse_view] / [`View.describe`][ser.views.View.describe] give their meaning. Standard library
only, so every layer (extraction, fitting, grids, prediction) can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ser.errors import UserError

VIEW_KEYS = ("stat", "layer", "seq")
"""The options a view may name (``seq`` excludes ``stat`` and ``layer``)."""
VIEW_HELP = "use stat=NAME, layer=last|avg|weighted|N or seq[=LAYER]"


class ViewError(UserError):
    """A view text that does not follow ``STORE[:stat=NAME,layer=..|seq=LAYER]``."""


def split_view(text: str) -> tuple[str, dict[str, str]]:
    """``"a.h5:stat=mean,layer=6"`` -> ``("a.h5", {"stat": "mean", "layer": "6"})``; a bare key (``seq``)
    maps to ``""``. The options keep their order and are not checked (see [`parse_view`][ser.views.parse_view])."""
    store, _, options = str(text).partition(":")
    return store, split_options(options)


def split_options(options: str) -> dict[str, str]:
    """``"stat=mean,layer=6"`` -> ``{"stat": "mean", "layer": "6"}`` (the part after the store)."""
    pairs = (part.strip().partition("=") for part in options.split(",") if part.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


def join_view(store: str | Path, options: dict[str, str]) -> str:
    """The inverse of [`split_view`][ser.views.split_view]: ``STORE`` alone when there are no options."""
    text = ",".join(f"{key}={value}" if value != "" else key for key, value in options.items())
    return f"{store}:{text}" if text else str(store)


def store_of(text: str) -> str:
    """The store path of a view text (everything before the first colon)."""
    return split_view(text)[0]


def set_option(text: str, option: str, value: object) -> str:
    """``text`` with one option changed: ``store`` swaps the store and keeps the options; ``seq``
    replaces ``stat`` / ``layer`` and they replace it (None for ``seq``: the bare ``seq``)."""
    store, options = split_view(text)
    if option == "store":
        store = str(value)
    elif option == "seq":
        options = {"seq": "" if value is None else str(value)}
    elif option in VIEW_KEYS:
        options.pop("seq", None)
        options[option] = str(value)
    else:
        raise ViewError(f"{text!r}: unknown view option {option!r}; {VIEW_HELP} (or store=PATH)")
    return join_view(store, options)


@dataclass(frozen=True)
class View:
    """How one modality is read from its store."""

    store: Path
    """The cache store file the modality is read from."""
    kind: str = "pooled"
    """``pooled`` or ``seq``."""
    stat: str | None = None
    """Pooled statistic (None: the store's first)."""
    layer: str = "last"
    """Pooled: ``last``, ``avg``, ``weighted`` or a layer number; seq: a stored layer name (or ``""``)."""
    auto: bool = False
    """True when the input named no view: the fit reads the store's recommended one."""

    def options(self) -> dict[str, str]:
        """The view's options as [`join_view`][ser.views.join_view] writes them."""
        if self.kind == "seq":
            return {"seq": self.layer}
        return {**({"stat": self.stat} if self.stat is not None else {}), "layer": self.layer}

    def describe(self) -> str:
        """``store-name:stat=..,layer=..`` / ``store-name:seq=..`` (the file name, for messages and records)."""
        if self.auto:
            return f"{self.store.name} (recommended view)"
        return join_view(self.store.name, self.options())


def parse_view(text: str) -> View:
    """Parse ``STORE[:key=value,...]`` (see the module docstring)."""
    store, options = split_view(text)
    if not store:
        raise ViewError(f"empty store path in {text!r}")
    if not options:
        return View(store=Path(store), auto=True)
    kind, stat, layer = "pooled", None, "last"
    for key, value in options.items():
        if key == "seq":
            kind, layer = "seq", value
        elif key in ("stat", "layer") and value:
            if key == "stat":
                stat = value
            else:
                layer = value
        else:
            raise ViewError(f"{text!r}: unknown view option {key + ('=' + value if value else '')!r}; {VIEW_HELP}")
    return View(store=Path(store), kind=kind, stat=stat, layer=layer)
