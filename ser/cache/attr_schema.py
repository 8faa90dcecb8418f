"""The schema of a finished store's attributes, checked once when the store is opened.

A store keeps its provenance as attributes: a few plain values (``format``, ``format_version``,
``status``, ``n_items``, ``n_rejected``, ``finalized``) and JSON text for the rest (``layout``,
``checksums``, ``extractor``, ``upstream``, ``manifest``, ...). [`read_attrs`][ser.cache.attr_schema.read_attrs]
decodes them and checks each against the shape ser writes, so a damaged or hand-edited attribute
(invalid JSON, JSON of the wrong type, nesting deep enough to exhaust the stack, a record missing a
required field) is one [`CacheError`][ser.cache.format.CacheError] naming the store, the attribute and
what is wrong, and everything downstream of [`CacheReader`][ser.cache.reader.CacheReader] may trust
the attributes it hands out. Attributes ser does not know are kept when they are valid JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.format import FORMAT_NAME, FORMAT_VERSION, CacheError, StoreLayout

MAX_DEPTH = 64
"""Deepest nesting of lists and objects accepted in a JSON attribute (ser writes at most a few levels)."""

PLAIN_ATTRS = ("format", "format_version", "status", "layout", "n_items", "n_rejected", "finalized")
"""Attributes stored as plain values, not JSON text (``layout`` is JSON text, decoded by its own check)."""

FIX = (
    "the store's metadata is damaged or was edited by hand: delete the store and run the same `ser extract` "
    "command again to re-extract it, or restore it from a copy"
)

TOO_DEEP = f"is nested too deeply (over {MAX_DEPTH} levels of lists and objects)"

Check = Callable[[Any, str], str | None]
"""``check(value, where)``: what is wrong with ``value`` (found at ``where``), or None when it fits."""


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, bool | dict | list | str) or value is None:
        return names[type(value)]
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _string(nullable: bool = False) -> Check:
    def check(value: Any, where: str) -> str | None:
        if isinstance(value, str) or (nullable and value is None):
            return None
        return f"{where} must be a string{' or null' if nullable else ''}, not {_kind(value)}"

    return check


def _integer(minimum: int = 0) -> Check:
    def check(value: Any, where: str) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"{where} must be an integer >= {minimum}, not {_shown(value)}"

    return check


def _dtype(value: Any, where: str) -> str | None:
    if not isinstance(value, str):
        return f"{where} must be a dtype name, not {_kind(value)}"
    try:
        np.dtype(value)
    except TypeError:
        return f"{where} must be a dtype name, not {_shown(value)}"
    return None


def _list_of(item: Check, length: int | None = None) -> Check:
    def check(value: Any, where: str) -> str | None:
        if not isinstance(value, list):
            return f"{where} must be a list, not {_kind(value)}"
        if length is not None and len(value) != length:
            return f"{where} must have {length} items, not {len(value)}"
        return next((p for i, v in enumerate(value) if (p := item(v, f"{where}[{i}]"))), None)

    return check


def _mapping_of(item: Check) -> Check:
    def check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object, not {_kind(value)}"
        return next((p for k, v in value.items() if (p := item(v, f"{where}[{k!r}]"))), None)

    return check


def _record(fields: Mapping[str, Check], required: tuple[str, ...] = (), nullable: bool = False) -> Check:
    """An object whose ``required`` keys are present and whose known ``fields`` fit (other keys: anything)."""

    def check(value: Any, where: str) -> str | None:
        if nullable and value is None:
            return None
        if not isinstance(value, dict):
            return f"{where} must be an object{' or null' if nullable else ''}, not {_kind(value)}"
        missing = [key for key in required if key not in value]
        if missing:
            return f"{where} lacks {', '.join(repr(k) for k in missing)}"
        return next((p for k, c in fields.items() if k in value and (p := c(value[k], f"{where}.{k}"))), None)

    return check


def _shard(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return None
    return _list_of(_integer(), 2)(value, where)


def _anything(value: Any, where: str) -> str | None:
    return None


LAYOUT = _record(
    {
        "pooled": _mapping_of(_list_of(_integer(), 2)),
        "seq": _mapping_of(_integer()),
        "pooled_dtype": _dtype,
        "seq_dtype": _dtype,
    },
    required=("pooled",),
)

SCHEMA: dict[str, Check] = {
    "layout": LAYOUT,
    "checksums": _mapping_of(
        _record({"block_rows": _integer(1), "crc32": _list_of(_integer())}, required=("block_rows", "crc32"))
    ),
    "extractor": _record(
        {
            "name": _string(True),
            "preset": _string(True),
            "modality": _string(True),
            "config": _record({}, nullable=True),
            "config_hash": _string(True),
            "shard": _shard,
            "recommended_view": _string(True),
        }
    ),
    "upstream": _record({"adaptation": _record({}, nullable=True)}),
    "manifest": _record(
        {"path": _string(True), "sha256": _string(True), "n_items": _integer(), "corpus": _string(True)},
        required=("sha256",),
    ),
    "environment": _record({}),
    "created": _string(),
    "fingerprint_scheme": _string(True),
    "augmentation": _record({}, nullable=True),
    "corruption": _record({}, nullable=True),
    "merged_from": _list_of(_record({"path": _string(), "n_items": _integer(), "shard": _shard})),
    "n_items": _integer(),
    "n_rejected": _integer(),
    "finalized": _string(),
}
"""Attribute -> its check. Attributes ser does not know only have to be valid JSON."""


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests lists and objects deeper than [`MAX_DEPTH`][ser.cache.attr_schema.MAX_DEPTH]."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _plain(value: Any) -> Any:
    """An attribute as read by h5py or zarr, as a plain Python value (numpy scalars and arrays converted)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def _decode(key: str, value: Any) -> tuple[Any, str | None]:
    """The JSON value of attribute ``key`` and what is wrong with its text (None when it parses)."""
    if key in PLAIN_ATTRS and key != "layout":
        return value, None
    if not isinstance(value, str):  # a Zarr attribute edited into a JSON value, not JSON text: take it as is
        return value, None
    try:
        return json.loads(value), None
    except RecursionError:
        return None, TOO_DEEP
    except ValueError as err:
        return None, f"is not valid JSON ({err})"


def _missing_checksums(layout: StoreLayout, checksums: Mapping[str, Any]) -> list[str]:
    """The datasets every checksummed store records that ``checksums`` lacks (links and notes came later)."""
    names = ["ids", "fingerprints", "seq/offsets", *(f"pooled/{s}" for s in layout.pooled)]
    names += [f"seq/{layer}" for layer in layout.seq]
    return [name for name in names if name not in checksums]


def read_attrs(path: Path, raw: Mapping[str, Any]) -> tuple[StoreLayout, dict[str, Any]]:
    """The layout and the decoded attributes of the finished store at ``path`` (``raw``: its attributes
    as the backend reads them); one [`CacheError`][ser.cache.format.CacheError] for the first one that is
    not what ser writes."""
    attrs = {key: _plain(value) for key, value in raw.items()}
    if attrs.get("format") != FORMAT_NAME:
        raise CacheError(f"{path} is not a ser cache store (format attribute {attrs.get('format')!r})")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{path} uses cache format version {attrs.get('format_version')}; this ser reads "
            f"version {FORMAT_VERSION}. Re-extract it with this version of ser"
        )
    if attrs.get("status") != "complete":
        raise CacheError(f"{path} has status {attrs.get('status')!r}; only complete stores can be read")
    if "layout" not in attrs:
        raise CacheError(f"{path}: the store has no 'layout' attribute; {FIX}")
    decoded: dict[str, Any] = {}
    for key, value in attrs.items():
        value, problem = _decode(key, value)
        if problem is None and _too_deep(value):
            problem = TOO_DEEP
        if problem is None:
            check = SCHEMA.get(key, _anything)
            wrong = check(value, key)
            problem = None if wrong is None else f"is malformed: {wrong}"
        if problem is not None:
            raise CacheError(f"{path}: the store's {key!r} attribute {problem}; {FIX}")
        decoded[key] = value
    layout = StoreLayout.from_record(decoded["layout"])
    decoded["layout"] = attrs["layout"]  # as written (JSON text); the reader hands out the parsed layout
    missing = _missing_checksums(layout, decoded.get("checksums") or {}) if "checksums" in decoded else []
    if missing:
        raise CacheError(
            f"{path}: the store's 'checksums' attribute is malformed: it has no entry for {', '.join(missing)}; {FIX}"
        )
    return layout, decoded
