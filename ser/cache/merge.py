"""Join shard stores (``--shard i/N`` extractions) into one store."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.assemble import assemble_store
from ser.cache.format import CacheError, check_compression
from ser.cache.reader import CacheReader

logger = logging.getLogger(__name__)


class _ShardSource:
    """A finished store seen as a run of rows for [`assemble_store`][ser.cache.assemble.assemble_store]."""

    def __init__(self, reader: CacheReader) -> None:
        self.reader = reader
        self.ids = reader.ids
        self.fingerprints = reader.fingerprints
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
    shards: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, compression: str | None = None
) -> Path:
    """Concatenate complete shard stores of the same extractor config and manifest into ``out``.

    Refuses shards whose bytes fail their checksums (naming the shard and rows; nothing is written), shards
    with different configs, layouts or manifests, and ids present in two shards.
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
    rejected = {uid: reason for r in readers for uid, reason in r.rejected.items() if uid not in seen}
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
    attrs["merged_from"] = [
        {"path": Path(r.path).name, "n_items": len(r), "shard": r.attrs.get("extractor", {}).get("shard")}
        for r in readers
    ]
    return assemble_store(
        out,
        layout=first.layout,
        attrs=attrs,
        sources=[_ShardSource(r) for r in readers],
        rejected=rejected,
        notes=notes,
        compression=compression,
        links={c: s for r in readers for c, s in r.links.items()},
    )
