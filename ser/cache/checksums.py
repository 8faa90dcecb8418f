"""Per-block CRC-32 checksums of a store's datasets, written when the store is assembled.

Every dataset (ids, fingerprints, offsets, pooled statistics, sequences) is cut into blocks of
about [`CHECK_BYTES`][ser.cache.checksums.CHECK_BYTES] along its first axis; the CRC-32 of each block's bytes (C order,
the stored dtype) goes into the store's ``checksums`` attribute. ``ser cache verify`` recomputes all of
them and ``ser fit`` those of the pooled statistic it reads, so a changed value, a truncated or
deleted chunk file (which Zarr would read as zeros) is found instead of trained on. zlib's CRC-32
runs at several GB/s, a small cost next to reading the same bytes.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ser.cache.format import CacheError

CHECK_BYTES = 16 << 20
"""Bytes per checksummed block (the last block of a dataset may be shorter)."""


def block_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per block of a dataset of ``shape`` and ``dtype``."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, CHECK_BYTES // max(1, row_bytes))


def _crc(block: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(block).data.cast("B"))


def dataset_checksums(store: Any, name: str) -> dict[str, Any]:
    """``{"block_rows": R, "crc32": [...]}`` of dataset ``name`` of an open store file."""
    shape = store.shape(name)
    rows = block_rows(shape, store.dtype(name))
    return {
        "block_rows": rows,
        "crc32": [
            _crc(store.read(name, slice(start, min(shape[0], start + rows)))) for start in range(0, shape[0], rows)
        ],
    }


def mismatched_blocks(store: Any, name: str, record: dict[str, Any]) -> list[tuple[int, int]]:
    """Row ranges ``(start, stop)`` of dataset ``name`` whose bytes no longer match ``record``."""
    shape = store.shape(name)
    rows = int(record["block_rows"])
    expected = list(record["crc32"])
    starts = list(range(0, shape[0], rows))
    if len(starts) != len(expected):
        return [(0, shape[0])]
    return [
        (start, min(shape[0], start + rows))
        for start, crc in zip(starts, expected, strict=True)
        if _block_crc(store, name, start, min(shape[0], start + rows)) != crc
    ]


def _block_crc(store: Any, name: str, start: int, stop: int) -> int | None:
    """CRC-32 of rows start:stop, or None when they cannot be read at all (a missing or cut chunk file)."""

    try:
        return _crc(store.read(name, slice(start, stop)))
    except (CacheError, OSError, ValueError):
        return None
