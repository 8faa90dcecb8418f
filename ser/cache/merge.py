"""Join stores into one: the shards of one ``--shard i/N`` extraction, or (``--manifest``) stores extracted per
corpus from different manifests, re-tied to the manifest that joins those corpora."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.assemble import assemble_store
from ser.cache.format import CacheError, check_compression
from ser.cache.reader import CacheReader

RowsCheck = Callable[[CacheReader], Sequence[str]]
"""Checks one store's rows against a joined manifest (raising a message that names the store and the rows) and
returns the store's fingerprints under that manifest, one per row."""

logger = logging.getLogger(__name__)


class _ShardSource:
    """A finished store seen as a run of rows for [`assemble_store`][ser.cache.assemble.assemble_store]."""

    def __init__(self, reader: CacheReader, fingerprints: Sequence[str] | None = None) -> None:
        self.reader = reader
        self.ids = reader.ids
        self.fingerprints = list(fingerprints) if fingerprints is not None else reader.fingerprints
        self.lengths = reader.lengths

    def pooled_rows(self, stat: str, start: int, stop: int) -> np.ndarray:
        return self.reader._file().read(f"pooled/{stat}", slice(start, stop))

    def seq_frames(self, layer: str, start: int, stop: int) -> np.ndarray:
        return self.reader._file().read(f"seq/{layer}", slice(start, stop))


def _shard_of(value: object) -> tuple[int, int] | None:
    """``(i, N)`` from a store's shard record (``[i, N]``, or ``"i/N"`` in older stores); None otherwise."""
    if isinstance(value, str):
        parts: list[str] | list[Any] | tuple[Any, ...] = value.split("/")
    elif isinstance(value, (list, tuple)):
        parts = value
    else:
        return None
    try:
        index, count = (int(p) for p in parts)
    except (TypeError, ValueError):
        return None
    return index, count


def _warn_missing_shards(readers: Sequence[CacheReader]) -> None:
    """Say so when the shards given are not all ``0/N`` ... ``N-1/N`` of one extraction."""
    shards = [_shard_of(r.attrs.get("extractor", {}).get("shard")) for r in readers]
    if any(s is None for s in shards):
        return
    counts = {s[1] for s in shards if s is not None}
    given = {s[0] for s in shards if s is not None}
    missing = sorted(set(range(max(counts))) - given)
    if missing or len(counts) > 1:
        logger.warning(
            "merging %d shard(s) of %s: shard(s) %s are missing, so the merged store lacks their rows "
            "(`ser cache verify STORE --manifest M` lists them)",
            len(readers),
            "/".join(str(c) for c in sorted(counts)),
            ", ".join(map(str, missing)) or "none",
        )


def merge_stores(
    shards: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    compression: str | None = None,
    manifest: Mapping[str, Any] | None = None,
    check_rows: RowsCheck | None = None,
) -> Path:
    """Concatenate complete stores of the same extractor config into ``out``.

    Without ``manifest`` the stores are the shards of one extraction: they must share the manifest too.
    With ``manifest`` (the record, as in a store's ``manifest`` attribute, of a manifest joining several corpora)
    and ``check_rows`` they may come from different manifests (see
    [`merge_corpora`][ser.cache.merge.merge_corpora]).
    Refuses stores whose bytes fail their checksums (naming the store and rows; nothing is written), stores
    with different configs or layouts, and ids present in two stores.
    An id rejected by one shard but stored by another counts as stored.
    """
    if len(shards) < 1:
        raise CacheError("ser cache merge needs at least one shard store")
    check_compression(Path(out), compression)
    readers: list[CacheReader] = []
    try:
        for shard in shards:
            readers.append(CacheReader(shard))
        for reader in readers:
            _require_intact_shard(reader)
        if manifest is not None:
            if check_rows is None:
                raise ValueError("merging over a joined manifest needs check_rows")
            return merge_corpora(readers, dict(manifest), check_rows, Path(out), compression)
        return _merge_readers(readers, Path(out), compression)
    finally:
        for reader in readers:
            reader.close()


def _require_intact_shard(reader: CacheReader) -> None:
    """Refuse a shard whose bytes fail its checksums: merging it would write fresh checksums over the damage.

    A shard written before checksums were recorded cannot be checked; it is merged with a warning.
    """
    if not reader.has_checksums:
        logger.warning(
            "%s records no checksums (written by an older ser): damage in it cannot be detected and the merged "
            "store's checksums will vouch for its values; re-extract it to be sure",
            reader.path,
        )
        return
    problems = reader.damaged()
    if problems:
        shard = _shard_of(reader.attrs.get("extractor", {}).get("shard"))
        again = f"`ser extract ... --shard {shard[0]}/{shard[1]}`" if shard else "`ser extract`"
        raise CacheError(
            f"shard {reader.path} is damaged ({'; '.join(problems)}), so nothing was merged: re-extract "
            f"that shard ({again} after deleting it) or repair it with the same command and `--repair`, "
            "then merge again"
        )


def _merge_readers(readers: list[CacheReader], out: Path, compression: str | None) -> Path:
    """Merge the open, intact shard ``readers`` into ``out`` (see [`merge_stores`][ser.cache.merge.merge_stores])."""
    first = readers[0]
    config = first.attrs.get("extractor", {}).get("config_hash")
    manifest = first.attrs.get("manifest", {}).get("sha256")
    seen: dict[str, Path] = {}
    for reader in readers:
        if reader.layout != first.layout or reader.attrs.get("extractor", {}).get("config_hash") != config:
            raise CacheError(
                f"{reader.path} was extracted with another config or layout than {first.path}; "
                "only shards of one `ser extract` command can be merged"
            )
        if reader.attrs.get("manifest", {}).get("sha256") != manifest:
            raise CacheError(f"{reader.path} was extracted from another manifest than {first.path}")
        for uid in reader.ids:
            if uid in seen:
                raise CacheError(f"id {uid!r} is in both {seen[uid]} and {reader.path}; shards must be disjoint")
            seen[uid] = reader.path
    _warn_missing_shards(readers)
    merged_from = [
        {"path": Path(r.path).name, "n_items": len(r), "shard": r.attrs.get("extractor", {}).get("shard")}
        for r in readers
    ]
    return _assemble(readers, out, compression, merged_from=merged_from)


def _assemble(
    readers: list[CacheReader],
    out: Path,
    compression: str | None,
    *,
    merged_from: list[dict[str, Any]],
    manifest: dict[str, Any] | None = None,
    fingerprints: Mapping[Path, Sequence[str]] | None = None,
) -> Path:
    """Write the rows of ``readers`` (checked) into ``out`` with the first store's provenance, ``merged_from``,
    and optionally another ``manifest`` record and new ``fingerprints`` (store path -> one per row)."""
    first = readers[0]
    stored = {uid for r in readers for uid in r.ids}
    rejected = {uid: reason for r in readers for uid, reason in r.rejected.items() if uid not in stored}
    notes = {uid: text for r in readers for uid, text in r.notes.items()}
    attrs = {
        key: value
        for key, value in first.attrs.items()
        if key
        not in ("format", "format_version", "status", "layout", "n_items", "n_rejected", "finalized", "checksums")
    }
    extractor = dict(attrs.get("extractor", {}))
    extractor.pop("shard", None)
    attrs["extractor"] = extractor
    attrs["merged_from"] = merged_from
    if manifest is not None:
        attrs["manifest"] = manifest
    return assemble_store(
        out,
        layout=first.layout,
        attrs=attrs,
        sources=[_ShardSource(r, (fingerprints or {}).get(r.path)) for r in readers],
        rejected=rejected,
        notes=notes,
        compression=compression,
        links={c: s for r in readers for c, s in r.links.items()},
    )


# ------------------------------------------------------------------------------------------------ corpora


def _flat(prefix: str, value: object) -> dict[str, object]:
    """``{"a.b": leaf}`` of nested dicts (lists and other values are leaves)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


def _extraction(reader: CacheReader) -> dict[str, object]:
    """What must be equal for two stores to hold the same features: the extractor's config records (and its
    hash, name, preset, modality), the layout with its dtypes, the upstream model and weights, the fingerprint
    scheme, and any augmentation or corruption."""
    extractor = reader.attrs.get("extractor") or {}
    record = {
        "extractor": {key: extractor.get(key) for key in ("name", "preset", "modality", "config_hash")},
        "config": extractor.get("config") or {},
        "layout": dataclasses.asdict(reader.layout),
        "upstream": reader.attrs.get("upstream") or {},
        "fingerprint_scheme": reader.attrs.get("fingerprint_scheme"),
        "augmentation": reader.attrs.get("augmentation"),
        "corruption": reader.attrs.get("corruption"),
    }
    return _flat("", record)


def _require_same_extraction(readers: Sequence[CacheReader]) -> None:
    """Refuse stores whose features were computed differently, naming the pair and each differing key."""
    first = readers[0]
    reference = _extraction(first)
    for reader in readers[1:]:
        other = _extraction(reader)
        differing = [
            f"{key}: {_json_text(reference.get(key))} vs {_json_text(other.get(key))}"
            for key in sorted(set(reference) | set(other))
            if reference.get(key) != other.get(key)
        ]
        if differing:
            raise CacheError(
                f"{first.path} and {reader.path} were extracted with different settings ({'; '.join(differing)}), "
                "so their features cannot share one store; extract every corpus with the same `ser extract` "
                "options (or extract once over the joined manifest)"
            )


def _json_text(value: object) -> str:
    """A value as it is written in messages (``64``, ``"hubert"``, ``null``, ``[1, 2]``)."""
    return json.dumps(value, default=str)


def merge_corpora(
    readers: list[CacheReader],
    manifest: dict[str, Any],
    check_rows: RowsCheck,
    out: Path,
    compression: str | None,
) -> Path:
    """Merge intact stores extracted from different manifests into one store tied to the joined ``manifest``.

    Refused, naming the stores and the fix: stores whose extractor settings differ (each differing key with both
    values) and ids in two stores; ``check_rows`` refuses rows that are not the joined manifest's and returns
    each store's fingerprints under it. The merged store's ``manifest`` attribute is ``manifest``, so
    ``ser fit -m JOINED --audio MERGED`` reads it; ``merged_from`` lists the source stores with the manifests
    they were extracted from.
    """
    _require_same_extraction(readers)
    seen: dict[str, Path] = {}
    for reader in readers:
        for uid in reader.ids:
            if uid in seen:
                raise CacheError(
                    f"id {uid!r} is in both {seen[uid]} and {reader.path}; stores merged over a joined manifest "
                    "must hold disjoint ids (one store per corpus, each extracted from that corpus's manifest)"
                )
            seen[uid] = reader.path
    fingerprints = {reader.path: list(check_rows(reader)) for reader in readers}
    merged_from = [{"path": Path(r.path).name, "n_items": len(r), "manifest": r.attrs.get("manifest")} for r in readers]
    logger.info("merging %d stores (%d rows) over %s", len(readers), len(seen), manifest.get("path"))
    return _assemble(readers, out, compression, merged_from=merged_from, manifest=manifest, fingerprints=fingerprints)
