"""Join shard stores (``--shard i/N`` extractions) into one store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ser.cache.assemble import assemble_store
from ser.cache.format import CacheError, check_compression
from ser.cache.reader import CacheReader


class _ShardSource:
    """A finished store seen as a run of rows for :func:`~ser.cache.assemble.assemble_store`."""

    def __init__(self, reader: CacheReader) -> None:
        self.reader = reader
        self.ids = reader.ids
        self.fingerprints = reader.fingerprints
        self.lengths = reader.lengths

    def pooled_rows(self, stat: str, start: int, stop: int) -> np.ndarray:
        return self.reader._file().read(f"pooled/{stat}", slice(start, stop))

    def seq_frames(self, layer: str, start: int, stop: int) -> np.ndarray:
        return self.reader._file().read(f"seq/{layer}", slice(start, stop))


def merge_stores(shards: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 compression: str | None = None) -> Path:
    """Concatenate complete shard stores of the same extractor config and manifest into ``out``.

    Refuses shards with different configs, layouts or manifests, and ids present in two shards.
    An id rejected by one shard but stored by another counts as stored.
    """
    if len(shards) < 1:
        raise CacheError("ser cache merge needs at least one shard store")
    check_compression(Path(out), compression)
    readers = [CacheReader(p) for p in shards]
    first = readers[0]
    config = first.attrs.get("extractor", {}).get("config_hash")
    manifest = first.attrs.get("manifest", {}).get("sha256")
    seen: dict[str, Path] = {}
    for reader in readers:
        if reader.layout != first.layout or reader.attrs.get("extractor", {}).get("config_hash") != config:
            raise CacheError(f"{reader.path} was extracted with another config or layout than {first.path}; "
                             "only shards of one `ser extract` command can be merged")
        if reader.attrs.get("manifest", {}).get("sha256") != manifest:
            raise CacheError(f"{reader.path} was extracted from another manifest than {first.path}")
        for uid in reader.ids:
            if uid in seen:
                raise CacheError(f"id {uid!r} is in both {seen[uid]} and {reader.path}; shards must be disjoint")
            seen[uid] = reader.path
    rejected = {uid: reason for r in readers for uid, reason in r.rejected.items() if uid not in seen}
    notes = {uid: text for r in readers for uid, text in r.notes.items()}
    attrs = {key: value for key, value in first.attrs.items()
             if key not in ("format", "format_version", "status", "layout", "n_items", "n_rejected", "finalized",
                            "checksums")}
    extractor = dict(attrs.get("extractor", {}))
    extractor.pop("shard", None)
    attrs["extractor"] = extractor
    attrs["merged_from"] = [{"path": Path(r.path).name, "n_items": len(r), "shard": r.attrs.get("extractor", {})
                             .get("shard")} for r in readers]
    try:
        return assemble_store(Path(out), layout=first.layout, attrs=attrs,
                              sources=[_ShardSource(r) for r in readers], rejected=rejected, notes=notes,
                              compression=compression)
    finally:
        for reader in readers:
            reader.close()
