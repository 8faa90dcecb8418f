"""Read finished stores: ids, pooled views, per-utterance sequences.

The reader opens its file lazily and re-opens it in a new process (checked by pid), so one reader
object can be handed to DataLoader worker processes safely; pickling drops the open handle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.attr_schema import read_attrs
from ser.cache.backends import StoreFile, open_store_file
from ser.cache.checksums import mismatched_blocks
from ser.cache.format import (
    PARTIAL_SUFFIX,
    CacheError,
    StoreLayout,
    backend_of,
    decode_strings,
    partial_path,
    set_aside_path,
    source_of,
)

MAX_LISTED = 5
"""How many ids a message names before ``(and N more)``."""


def listing(values: Sequence[str]) -> str:
    """The first [`MAX_LISTED`][ser.cache.reader.MAX_LISTED] values, comma-separated, then ``(and N more)``."""
    shown = ", ".join(values[:MAX_LISTED])
    return shown + (f" (and {len(values) - MAX_LISTED} more)" if len(values) > MAX_LISTED else "")


def changed_rows_message(path: Path, changed: Sequence[str]) -> str:
    """What to say (and do) about stored rows whose inputs changed since extraction."""
    return (
        f"{path}: {len(changed)} manifest rows changed since this store was extracted (audio path, segment, "
        f"the audio file's content or, for text stores, the text differ): {listing(changed)}. Their "
        "features were computed from the old rows: re-run `ser extract` with this manifest and the same "
        "options, which extracts the changed rows again into the store (or extract into a new store)"
    )


class CacheReader:
    """A complete store, opened read-only.

    Raises [`CacheError`][ser.cache.format.CacheError] for missing or partial stores and unknown format versions.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.name.endswith(PARTIAL_SUFFIX):
            final = self.path.with_name(self.path.name[: -len(PARTIAL_SUFFIX)])
            raise CacheError(
                f"{self.path} is an unfinished store; run the same `ser extract` command again to "
                f"resume and finish it (it will be written to {final})"
            )
        backend_of(self.path)
        if not self.path.exists():
            if set_aside_path(self.path).exists():
                raise CacheError(
                    f"{self.path} is being extended, or its extension was interrupted: its finished rows "
                    f"wait in {set_aside_path(self.path).name} and the new ones in "
                    f"{partial_path(self.path).name}. Run the same `ser extract` command to finish it"
                )
            if partial_path(self.path).exists():
                raise CacheError(
                    f"{self.path} is not finished yet ({partial_path(self.path).name} exists); run the "
                    "same `ser extract` command again to resume and finish it"
                )
            raise CacheError(f"{self.path}: no such cache store; create it with `ser extract`")
        self._store: StoreFile | None = None
        self._pid = -1
        store = self._file()
        try:
            self._load(store)
        except BaseException:
            self.close()
            raise

    def _load(self, store: StoreFile) -> None:
        layout, attrs = read_attrs(self.path, dict(store.attrs))
        self.layout: StoreLayout = layout
        self.attrs: dict[str, Any] = attrs
        """The store's attributes, decoded and checked once against [`SCHEMA`][ser.cache.attr_schema.SCHEMA],
        so they can be trusted (``layout`` stays its JSON text; ``self.layout`` is the parsed form)."""
        self.ids: list[str] = decode_strings(store.read("ids"))
        self.fingerprints: list[str] = decode_strings(store.read("fingerprints"))
        self.index: dict[str, int] = {uid: row for row, uid in enumerate(self.ids)}
        self.offsets: np.ndarray = store.read("seq/offsets").astype(np.int64)
        self.rejected: dict[str, str] = dict(
            zip(decode_strings(store.read("rejected/ids")), decode_strings(store.read("rejected/reasons")), strict=True)
        )
        self.notes: dict[str, str] = {}
        if store.has("notes/ids"):
            self.notes = dict(
                zip(decode_strings(store.read("notes/ids")), decode_strings(store.read("notes/texts")), strict=True)
            )
        self.links: dict[str, str] = {}
        """Augmented copy id -> the id of its source row, as recorded by the extraction (stores written before
        links were recorded: from the copies' names, and only when the store records an augmentation policy)."""
        if store.has("links/ids"):
            self.links = dict(
                zip(decode_strings(store.read("links/ids")), decode_strings(store.read("links/sources")), strict=True)
            )
        elif self.attrs.get("augmentation"):
            self.links = {uid: source for uid in (*self.ids, *self.rejected) if (source := source_of(uid))}

    # ------------------------------------------------------------------ handles

    def _file(self) -> StoreFile:
        if self._store is None or self._pid != os.getpid():
            self._store = open_store_file(self.path, "r")
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        state["_pid"] = -1
        return state

    def close(self) -> None:
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, uid: object) -> bool:
        return uid in self.index

    @property
    def lengths(self) -> np.ndarray:
        """(N,) sequence length of each row (0 when no sequences are stored)."""
        return np.diff(self.offsets)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``ids``; a clear error names ids that are rejected or absent."""
        missing = [uid for uid in ids if uid not in self.index]
        if missing:
            rejected = [f"{uid} ({self.rejected[uid]})" for uid in missing if uid in self.rejected]
            absent = [uid for uid in missing if uid not in self.rejected]
            parts = []
            if rejected:
                parts.append(f"{len(rejected)} were rejected at extraction: {listing(rejected)}")
            if absent:
                parts.append(
                    f"{len(absent)} were never extracted: {listing(absent)} (extract them with `ser "
                    "extract` over the same manifest, or drop them from the manifest)"
                )
            raise CacheError(f"{self.path}: {len(missing)} requested ids are not in the store; " + "; ".join(parts))
        return np.fromiter((self.index[uid] for uid in ids), dtype=np.int64, count=len(ids))

    @property
    def manifest_sha256(self) -> str | None:
        """sha256 of the manifest file the store was extracted from (None when not recorded)."""
        manifest = self.attrs.get("manifest")
        return manifest.get("sha256") if isinstance(manifest, dict) else None

    def manifest_note(self, sha256: str, name: str = "the manifest") -> str | None:
        """None when ``sha256`` is the manifest hash recorded at extraction, else a sentence saying so.

        A different hash is not an error: labels, splits and other fields may change without a
        re-extraction. What matters is whether any row's audio, segment or text changed, which
        [`changed_rows`][ser.cache.reader.CacheReader.changed_rows] checks row by row.
        """
        recorded = self.manifest_sha256
        if recorded == sha256:
            return None
        if recorded is None:
            return f"{self.path} records no manifest sha256; every row's fingerprint is checked instead"
        source = (self.attrs.get("manifest") or {}).get("path")
        return (
            f"{name} (sha256 {sha256[:12]}) is not the manifest this store was extracted from (sha256 "
            f"{recorded[:12]}{f', {source}' if source else ''}); it was edited or rebuilt since. Labels and "
            "splits may change freely, so every row's fingerprint (audio path, segment, text) is checked "
            "instead"
        )

    def changed_rows(self, expected: Mapping[str, str]) -> list[str]:
        """Ids of stored rows whose manifest fingerprint (``expected``: id -> fingerprint) differs."""
        return [uid for uid, fp in expected.items() if uid in self.index and self.fingerprints[self.index[uid]] != fp]

    def check_rows(self, expected: Mapping[str, str]) -> None:
        """Refuse when a manifest row changed since extraction (audio, segment or text differ).

        ``expected`` maps id -> fingerprint of the current manifest row. Ids that are absent or
        rejected are reported by [`rows_of`][ser.cache.reader.CacheReader.rows_of], not here.
        """
        changed = self.changed_rows(expected)
        if changed:
            raise CacheError(changed_rows_message(self.path, changed))

    # ------------------------------------------------------------------ data

    def damaged(self, names: Sequence[str] | None = None) -> list[str]:
        """Datasets (all, or ``names``) whose bytes no longer match the checksums written with the store,
        one line each; empty when intact or when the store predates checksums (see
        [`has_checksums`][ser.cache.reader.CacheReader.has_checksums])."""

        records = self.attrs.get("checksums") or {}
        problems = []
        for name in names if names is not None else list(records):
            if name not in records:
                continue
            bad = mismatched_blocks(self._file(), name, records[name])
            if bad:
                spans = ", ".join(f"rows {a}-{b - 1}" for a, b in bad[:3]) + (" ..." if len(bad) > 3 else "")
                problems.append(f"{name}: {spans} differ from the checksums written with the store")
        return problems

    @property
    def has_checksums(self) -> bool:
        """False for stores written before checksums were recorded."""
        return bool(self.attrs.get("checksums"))

    def require_intact(self, names: Sequence[str]) -> None:
        """Raise a [`CacheError`][ser.cache.format.CacheError] naming the damage when a dataset fails its checksums."""
        problems = self.damaged(names)
        if problems:
            raise CacheError(
                f"{self.path} is damaged: {'; '.join(problems)} (a changed value, or a chunk file "
                "deleted or cut short). Re-extract it, or restore it from a copy"
            )

    def pooled(self, stat: str, *, ids: Sequence[str] | None = None, layers: Sequence[int] | None = None) -> np.ndarray:
        """Pooled statistic ``stat`` as (n, L', D): rows of ``ids`` in that order (all rows in store
        order when None), layers ``layers`` (all when None). Reads the array in one pass."""
        if stat not in self.layout.pooled:
            raise CacheError(f"{self.path} has no pooled statistic {stat!r}; it has {sorted(self.layout.pooled)}")
        array = self._file().read(f"pooled/{stat}")
        if layers is not None:
            n_layers = self.layout.pooled[stat][0]
            bad = [layer for layer in layers if not -n_layers <= layer < n_layers]
            if bad:
                raise CacheError(f"{self.path}: pooled {stat} has {n_layers} layers; layers {bad} do not exist")
            array = array[:, list(layers)]
        return array if ids is None else array[self.rows_of(ids)]

    def sequence(self, uid: str, layer: str) -> np.ndarray:
        """(T, D) stored sequence of one utterance for ``layer``."""
        if layer not in self.layout.seq:
            stored = sorted(self.layout.seq) or "none (re-extract with --seq)"
            raise CacheError(f"{self.path} stores no sequence for {layer!r}; stored layers: {stored}")
        row = self.index.get(uid)
        if row is None:
            row = int(self.rows_of([uid])[0])  # raises, naming why the id is missing
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        return self._file().read(f"seq/{layer}", slice(start, stop))
