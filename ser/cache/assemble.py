"""Write a finished store from row sources (writer segments or shard stores), streaming.

Both finalizing an extraction and merging shards come down to: concatenate the rows of several
sources into one store with the final shapes known up front. Memory stays bounded by the block
size, whatever the corpus size. The store is written under a temporary name and renamed into
place only when complete, so a crash never leaves a half-written store under the final name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ser.atomic_files import atomic_path
from ser.cache.backends import StoreFile, open_store_file
from ser.cache.checksums import dataset_checksums
from ser.cache.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    CacheError,
    StoreLayout,
    backend_of,
    check_compression,
    encode_strings,
)
from ser.cache.provenance import utc_now

DEFAULT_POOLED_CHUNK_BYTES = 16 << 20
DEFAULT_SEQ_CHUNK_BYTES = 4 << 20
BLOCK_BYTES = 64 << 20


class RowSource(Protocol):
    """A run of stored rows: ids with their arrays, readable in blocks."""

    ids: list[str]
    fingerprints: list[str]
    lengths: np.ndarray
    """(n,) int64 sequence length of each row (0 when the store keeps no sequences)."""

    def pooled_rows(self, stat: str, start: int, stop: int) -> np.ndarray:
        """(stop - start, L, D) pooled statistic of rows start:stop."""
        ...

    def seq_frames(self, layer: str, start: int, stop: int) -> np.ndarray:
        """(stop - start, D) frames start:stop of this source's concatenated sequence of ``layer``."""
        ...


def _blocks(total: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, max(1, step)):
        yield start, min(total, start + step)


def chunk_rows(row_bytes: int, target: int, n_rows: int) -> int:
    """Rows per chunk: about ``target`` bytes, with the rows spread evenly over the chunks.

    Zarr stores every chunk in full, so a last chunk holding a few rows would be mostly padding;
    spreading the rows keeps the padding under one row per chunk.
    """
    rows = max(1, target // max(1, row_bytes))
    n_chunks = max(1, -(-n_rows // rows))
    return max(1, -(-n_rows // n_chunks))


def assemble_store(
    out: Path,
    *,
    layout: StoreLayout,
    attrs: dict[str, Any],
    sources: Sequence[RowSource],
    rejected: dict[str, str],
    notes: dict[str, str] | None = None,
    compression: str | None = None,
    pooled_chunk_bytes: int = DEFAULT_POOLED_CHUNK_BYTES,
    seq_chunk_bytes: int = DEFAULT_SEQ_CHUNK_BYTES,
    links: dict[str, str] | None = None,
) -> Path:
    """Concatenate ``sources`` into a complete store at ``out`` (atomic: temp name, then rename).

    ``links`` maps each augmented copy's id to its source row's id (``links/ids``, ``links/sources``)."""
    check_compression(out, compression)
    if out.exists():
        raise CacheError(f"{out} already exists; delete it or choose another output path")
    ids = [i for source in sources for i in source.ids]
    fingerprints = [f for source in sources for f in source.fingerprints]
    n_rows = len(ids)
    lengths = (np.concatenate([s.lengths for s in sources]) if sources else np.zeros(0)).astype(np.int64)
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Written as <out>.assembling (a leftover of a killed run is cleared first), renamed into place when complete.
    with atomic_path(out, temp=out.with_name(out.name + ".assembling")) as tmp:
        store = open_store_file(tmp, "w", backend=backend_of(out))
        try:
            _create_arrays(
                store,
                layout,
                n_rows,
                int(offsets[-1]),
                compression,
                pooled_chunk_bytes,
                seq_chunk_bytes,
                ids,
                fingerprints,
                rejected,
                notes or {},
                offsets,
            )
            stored = set(ids) | set(rejected)
            kept = {copy: source for copy, source in (links or {}).items() if copy in stored}
            for name, values in (("links/ids", list(kept)), ("links/sources", list(kept.values()))):
                encoded = encode_strings(values)
                store.create(name, encoded.shape, "uint8", None, None)
                store.write(name, 0, encoded)
            _copy_rows(store, layout, sources)
            checksums = {name: dataset_checksums(store, name) for name in dataset_names(layout)}
            store.attrs.update(
                {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "status": "complete",
                    "layout": layout.to_json(),
                    "n_items": n_rows,
                    "n_rejected": len(rejected),
                    "finalized": utc_now(),
                    **{key: json.dumps(value, sort_keys=True, default=str) for key, value in attrs.items()},
                    "checksums": json.dumps(checksums),  # of these bytes (never a source store's)
                }
            )
        finally:
            store.close()
    return out


def dataset_names(layout: StoreLayout) -> list[str]:
    """Every dataset of a store with ``layout``."""
    return [
        "ids",
        "fingerprints",
        "rejected/ids",
        "rejected/reasons",
        "notes/ids",
        "notes/texts",
        "links/ids",
        "links/sources",
        "seq/offsets",
        *[f"pooled/{stat}" for stat in layout.pooled],
        *[f"seq/{layer}" for layer in layout.seq],
    ]


def _create_arrays(
    store: StoreFile,
    layout: StoreLayout,
    n_rows: int,
    n_frames: int,
    compression: str | None,
    pooled_chunk_bytes: int,
    seq_chunk_bytes: int,
    ids: list[str],
    fingerprints: list[str],
    rejected: dict[str, str],
    notes: dict[str, str],
    offsets: np.ndarray,
) -> None:
    for name, values in (
        ("ids", ids),
        ("fingerprints", fingerprints),
        ("rejected/ids", list(rejected)),
        ("rejected/reasons", list(rejected.values())),
        ("notes/ids", list(notes)),
        ("notes/texts", list(notes.values())),
    ):
        encoded = encode_strings(values)
        store.create(name, encoded.shape, "uint8", None, None)
        store.write(name, 0, encoded)
    for stat, (n_layers, dim) in layout.pooled.items():
        row_bytes = n_layers * dim * np.dtype(layout.pooled_dtype).itemsize
        store.create(
            f"pooled/{stat}",
            (n_rows, n_layers, dim),
            layout.pooled_dtype,
            (chunk_rows(row_bytes, pooled_chunk_bytes, n_rows), n_layers, dim),
            compression,
        )
    store.create("seq/offsets", offsets.shape, "int64", None, None)
    store.write("seq/offsets", 0, offsets)
    for layer, dim in layout.seq.items():
        row_bytes = dim * np.dtype(layout.seq_dtype).itemsize
        store.create(
            f"seq/{layer}",
            (n_frames, dim),
            layout.seq_dtype,
            (chunk_rows(row_bytes, seq_chunk_bytes, n_frames), dim),
            compression,
        )


def _copy_rows(store: StoreFile, layout: StoreLayout, sources: Sequence[RowSource]) -> None:
    row_start = 0
    frame_start = 0
    for source in sources:
        n = len(source.ids)
        for stat, (n_layers, dim) in layout.pooled.items():
            step = BLOCK_BYTES // max(1, n_layers * dim * 4)
            for start, stop in _blocks(n, step):
                block = source.pooled_rows(stat, start, stop).astype(layout.pooled_dtype, copy=False)
                store.write(f"pooled/{stat}", row_start + start, block)
        n_frames = int(source.lengths.sum())
        for layer, dim in layout.seq.items():
            for start, stop in _blocks(n_frames, BLOCK_BYTES // max(1, dim * 4)):
                block = source.seq_frames(layer, start, stop).astype(layout.seq_dtype, copy=False)
                store.write(f"seq/{layer}", frame_start + start, block)
        row_start += n
        frame_start += n_frames
