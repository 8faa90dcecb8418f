"""Bringing a finished store up to date with its manifest instead of calling it "complete".

A finished store is compared with the manifest rows of this run (this shard's, under ``--shard``):

* missing: rows neither stored nor rejected (the manifest grew);
* changed: stored rows whose audio path, segment or transcript changed (their fingerprint differs);
* retry: rejected rows, when ``--retry-rejected`` asks for them again (a transient NFS error).

When there is such work, the store is extended: it is renamed to ``<stem>.extending<suffix>``,
a new partial store is opened under the final name and seeded with every row worth keeping (all
stored rows but the changed ones; every rejection but those retried), the old store is removed,
and the runner extracts the rest as in any resume. Each step survives a crash: the renamed store
is only removed once its rows are flushed into the partial store, and a re-run finishes the
seeding first. Stored rows that are not in this manifest are kept (the store may serve a bigger
manifest, e.g. all IEMOCAP emotions while this manifest holds four). Rejected rows have no
fingerprint, so a changed row that was rejected stays rejected unless ``--retry-rejected`` is given.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.backends import open_store_file
from ser.cache.checksums import mismatched_blocks
from ser.cache.format import CacheError
from ser.cache.reader import CacheReader
from ser.cache.writer import CacheWriter
from ser.extract.base import ExtractorError
from ser.manifests.fingerprints import row_fingerprints, store_scheme
from ser.manifests.schema import Manifest

logger = logging.getLogger(__name__)

BLOCK_BYTES = 64 << 20
"""Rows are copied from the old store in blocks of about this many bytes (memory stays flat)."""


@dataclass
class Pending:
    """What a finished store lacks for the manifest rows of a run."""

    missing: list[str] = field(default_factory=list)
    """Manifest ids neither stored nor rejected."""
    changed: list[str] = field(default_factory=list)
    """Stored ids whose manifest row (audio path, segment, text) changed since extraction."""
    retry: list[str] = field(default_factory=list)
    """Rejected ids to extract again (``--retry-rejected``)."""
    damaged: list[str] = field(default_factory=list)
    """Stored ids whose bytes fail the store's checksums (``--repair``): extracted again."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Manifest ids that stay rejected, with the reason."""
    stored: int = 0
    """Manifest rows stored and unchanged."""

    @property
    def nothing_to_do(self) -> bool:
        return not (self.missing or self.changed or self.retry or self.damaged)

    def describe(self) -> str:
        """``3 new rows, 1 changed row, 2 rejected rows to retry``."""
        parts = [
            (len(self.missing), "new row"),
            (len(self.changed), "changed row"),
            (len(self.damaged), "damaged row"),
            (len(self.retry), "rejected row"),
        ]
        text = ", ".join(f"{n} {what}{'s' if n != 1 else ''}" for n, what in parts if n)
        return text + (" to retry" if self.retry else "")


def find_pending(
    path: Path, expected: Mapping[str, str], *, retry: Collection[str] = (), redo: Collection[str] = ()
) -> Pending:
    """Compare the finished store at ``path`` with ``expected`` (manifest id -> row fingerprint);
    rejected ids in ``retry`` and stored ids in ``redo`` (damaged) are to be extracted again."""
    pending = Pending()
    with CacheReader(path) as reader:
        for uid, fingerprint in expected.items():
            row = reader.index.get(uid)
            if row is not None:
                if uid in redo:
                    pending.damaged.append(uid)
                elif reader.fingerprints[row] != fingerprint:
                    pending.changed.append(uid)
                else:
                    pending.stored += 1
            elif uid in reader.rejected:
                if uid in retry:
                    pending.retry.append(uid)
                else:
                    pending.rejected[uid] = reader.rejected[uid]
            else:
                pending.missing.append(uid)
    return pending


def store_attrs_of(path: Path) -> dict[str, Any]:
    """Provenance attributes of a finished store, as plain JSON values (numpy scalars converted)."""
    with CacheReader(path) as reader:
        attrs = dict(reader.attrs)
    return json.loads(json.dumps(attrs, default=lambda value: value.item() if hasattr(value, "item") else str(value)))


def expected_fingerprints(store: Path, manifest: Manifest) -> dict[str, str]:
    """Id -> fingerprint of every manifest row, under the scheme and for the modality of ``store``."""
    with CacheReader(store) as reader:
        scheme, modality = store_scheme(reader.attrs)
    return row_fingerprints(manifest, manifest.utterances, modality=modality, scheme=scheme)


def remove_store(path: Path) -> None:
    """Delete an HDF5 file or a Zarr folder."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _row_blocks(reader: CacheReader) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges of about [`BLOCK_BYTES`][ser.extract.update.BLOCK_BYTES] each (at least one row)."""
    layout = reader.layout
    pooled_row = sum(n * d for n, d in layout.pooled.values()) * np.dtype(layout.pooled_dtype).itemsize
    frame_bytes = sum(layout.seq.values()) * np.dtype(layout.seq_dtype).itemsize
    lengths = reader.lengths
    start, size = 0, 0
    for row in range(len(reader)):
        row_bytes = pooled_row + int(lengths[row]) * frame_bytes
        if row > start and size + row_bytes > BLOCK_BYTES:
            yield start, row
            start, size = row, 0
        size += row_bytes
    if start < len(reader):
        yield start, len(reader)


def _read_rows(
    store: Any, layout: Any, offsets: np.ndarray, start: int, stop: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    pooled = {stat: store.read(f"pooled/{stat}", slice(start, stop)) for stat in layout.pooled}
    first, last = int(offsets[start]), int(offsets[stop])
    return pooled, {layer: store.read(f"seq/{layer}", slice(first, last)) for layer in layout.seq}


def _readable(
    store: Any, layout: Any, offsets: np.ndarray, start: int, stop: int
) -> Iterator[tuple[int, int, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Rows start:stop as one block, or row by row when the block cannot be read (a missing chunk file):
    rows that still cannot be read are left out, to be extracted again."""
    try:
        whole = _read_rows(store, layout, offsets, start, stop)
    except CacheError as err:
        logger.warning("rows %d-%d cannot be read as a block (%s); copying them one by one", start, stop - 1, err)
    else:
        yield (start, stop, *whole)
        return
    for row in range(start, stop):
        try:
            parts = _read_rows(store, layout, offsets, row, row + 1)
        except CacheError:
            continue
        yield (row, row + 1, *parts)


def damaged_rows(path: Path) -> set[str]:
    """Ids of the rows of a finished store whose bytes fail its checksums (``ser extract --repair``)."""

    with CacheReader(path) as reader:
        records = reader.attrs.get("checksums") or {}
        if not records:
            raise ExtractorError(
                f"{path} records no checksums (written by an older ser): --repair cannot tell which "
                "rows are damaged; delete it and extract again"
            )
        store = reader._file()
        bad = [
            name
            for name in ("ids", "fingerprints", "seq/offsets", "rejected/ids")
            if name in records and mismatched_blocks(store, name, records[name])
        ]
        if bad:
            raise ExtractorError(
                f"{path}: {', '.join(bad)} are damaged, so rows cannot be matched to ids; delete the "
                "store and extract again"
            )
        rows: set[int] = set()
        offsets = reader.offsets
        for name, record in records.items():
            for start, stop in mismatched_blocks(store, name, record) if name.startswith(("pooled/", "seq/")) else []:
                if name.startswith("pooled/"):
                    rows.update(range(start, stop))
                else:  # frames start:stop belong to the rows whose spans overlap them
                    first = int(np.searchsorted(offsets, start, side="right")) - 1
                    last = int(np.searchsorted(offsets, stop, side="left"))
                    rows.update(range(max(first, 0), min(last, len(reader))))
        return {reader.ids[row] for row in rows}


def rows_to_repair(path: Path, expected: Mapping[str, str]) -> set[str]:
    """Damaged ids of the finished store at ``path`` (``ser extract --repair``), all named by ``expected``.

    Only rows of this run's manifest can be extracted again; a damaged row the manifest does not name
    would be dropped from the store, so it is refused instead (rows outside the manifest that are intact
    are kept as they are).
    """
    damaged = damaged_rows(path)
    outside = sorted(uid for uid in damaged if uid not in expected)
    if outside:
        shown = ", ".join(repr(uid) for uid in outside[:5]) + (" ..." if len(outside) > 5 else "")
        raise ExtractorError(
            f"{path}: {len(outside)} damaged row(s) are not in this manifest ({shown}; checksums cover blocks "
            "of rows, so intact rows next to a damaged one count as damaged too), so --repair cannot extract "
            "them again and would drop them; nothing was changed. Run --repair with the manifest that covers "
            "them (the one the store was extracted from)"
        )
    return damaged


def seed_from_store(
    writer: CacheWriter,
    source: Path,
    expected: Mapping[str, str],
    *,
    retry: Collection[str],
    redo: Collection[str] = (),
) -> int:
    """Copy the rows of the finished store ``source`` into ``writer``; returns the rows copied.

    Skipped: ids the writer already holds (a seeding interrupted before), stored rows whose
    fingerprint differs from ``expected`` (their manifest row changed: they are re-extracted),
    rejected ids in ``retry``, damaged ids in ``redo`` and rows that cannot be read (a missing
    chunk file): whatever is not copied is extracted again. Rows outside ``expected`` are kept.
    """
    done = writer.done_ids
    copied = 0
    with CacheReader(source) as reader:
        if reader.layout != writer.layout:
            raise ExtractorError(
                f"{source} has another layout than {writer.path} is written with; delete "
                f"{source} (or move it back to {writer.path}) and run again"
            )
        layout = reader.layout
        offsets = reader.offsets
        store = open_store_file(source, "r")
        try:
            for block_start, block_stop in _row_blocks(reader):
                for start, stop, pooled, frames in _readable(store, layout, offsets, block_start, block_stop):
                    first = int(offsets[start])
                    for row in range(start, stop):
                        uid, fingerprint = reader.ids[row], reader.fingerprints[row]
                        if uid in done or uid in redo or expected.get(uid, fingerprint) != fingerprint:
                            continue
                        a, b = int(offsets[row]) - first, int(offsets[row + 1]) - first
                        row_pooled = {stat: np.array(values[row - start]) for stat, values in pooled.items()}
                        row_seq = {layer: np.array(values[a:b]) for layer, values in frames.items()}
                        writer.add(uid, fingerprint, row_pooled, row_seq, note=reader.notes.get(uid))
                        copied += 1
        finally:
            store.close()
        held = writer.done_ids
        for uid, reason in reader.rejected.items():
            if uid not in held and uid not in retry:
                writer.reject(uid, reason)
    logger.info("%s: %d rows kept from the finished store", writer.path, copied)
    return copied
