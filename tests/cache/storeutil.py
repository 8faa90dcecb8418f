"""Helpers shared by the cache-store tests: deterministic rows, writing, reading back, comparing, tampering."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from ser.cache.format import StoreLayout, config_hash
from ser.cache.reader import CacheReader
from ser.cache.writer import CacheWriter
from tests.conftest import REPO_ROOT

BACKENDS = [".h5", ".zarr"]

CONFIG = {"model": "tiny", "layers": [0, 1, 2, 3]}
CONFIG_HASH = config_hash(CONFIG)
MANIFEST_SHA = "0" * 64

LAYOUT = StoreLayout(pooled={"mean": (4, 6), "std": (4, 6), "cls": (1, 10)}, seq={"layer_01": 6, "layer_03": 3})


def make_attrs(
    *, config_hash_: str = CONFIG_HASH, manifest_sha: str = MANIFEST_SHA, shard: str | None = None
) -> dict[str, Any]:
    extractor: dict[str, Any] = {"name": "fake", "preset": "tiny", "config": CONFIG, "config_hash": config_hash_}
    if shard is not None:
        extractor["shard"] = shard
    return {
        "extractor": extractor,
        "manifest": {"path": "m.csv", "sha256": manifest_sha, "n_items": 99},
        "upstream": {"model": "none", "sample_rate": 16000},
    }


@dataclass
class Row:
    """One deterministic row: its id, fingerprint, pooled stats and sequences (float64, as an extractor hands them)."""

    uid: str
    fingerprint: str
    pooled: dict[str, np.ndarray]
    seq: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return next(iter(self.seq.values())).shape[0] if self.seq else 0


def make_row(uid: str, seed: int, length: int, layout: StoreLayout = LAYOUT) -> Row:
    rng = np.random.default_rng(seed)
    pooled = {stat: rng.standard_normal(shape) * 3 for stat, shape in layout.pooled.items()}
    seq = {layer: rng.standard_normal((length, dim)) for layer, dim in layout.seq.items()}
    return Row(uid=uid, fingerprint=f"fp-{uid}-{seed}", pooled=pooled, seq=seq)


def make_rows(n: int, layout: StoreLayout = LAYOUT, *, start: int = 0) -> list[Row]:
    """``n`` rows (n + start < 997) with unique ids in non-sorted order and lengths cycling through 0..6 (T=0
    rows occur, also at the start and the end of segments)."""
    lengths = [3, 0, 5, 1, 0, 6, 2]
    return [
        make_row(
            f"utt-{(940 * (i + 1)) % 997:03d}",
            seed=i,
            length=lengths[i % len(lengths)] if layout.seq else 0,
            layout=layout,
        )
        for i in range(start, start + n)
    ]


def write_store(
    path: Path,
    rows: list[Row],
    *,
    layout: StoreLayout = LAYOUT,
    attrs: dict[str, Any] | None = None,
    rejected: dict[str, str] | None = None,
    segment_bytes: int = 1500,
) -> Path:
    """Write ``rows`` (and ``rejected``, interleaved after the first row) and finalize."""
    writer = CacheWriter.open(
        path, layout=layout, attrs=attrs if attrs is not None else make_attrs(), segment_bytes=segment_bytes
    )
    pending = dict(rejected or {})
    for n, row in enumerate(rows):
        assert writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
        if n == 0:
            for uid, reason in pending.items():
                writer.reject(uid, reason)
            pending = {}
    for uid, reason in pending.items():
        writer.reject(uid, reason)
    return writer.finalize()


@dataclass
class Content:
    """Everything a finished store holds, read through the public reader API."""

    ids: list[str]
    fingerprints: list[str]
    pooled: dict[str, np.ndarray]
    seq: dict[str, list[np.ndarray]]
    offsets: np.ndarray
    rejected: list[tuple[str, str]]
    layout: StoreLayout
    attrs: dict[str, Any]


def read_content(path: Path) -> Content:
    with CacheReader(path) as reader:
        return Content(
            ids=list(reader.ids),
            fingerprints=list(reader.fingerprints),
            pooled={stat: reader.pooled(stat) for stat in reader.layout.pooled},
            seq={layer: [reader.sequence(uid, layer) for uid in reader.ids] for layer in reader.layout.seq},
            offsets=reader.offsets.copy(),
            rejected=list(reader.rejected.items()),
            layout=reader.layout,
            attrs={k: v for k, v in reader.attrs.items() if k != "finalized"},
        )


def assert_same_content(got: Content, want: Content, *, compare_attrs: bool = True) -> None:
    assert got.ids == want.ids
    assert got.fingerprints == want.fingerprints
    assert got.layout == want.layout
    np.testing.assert_array_equal(got.offsets, want.offsets)
    assert got.offsets.dtype == np.int64
    assert got.rejected == want.rejected
    assert sorted(got.pooled) == sorted(want.pooled)
    for stat, array in want.pooled.items():
        assert got.pooled[stat].dtype == array.dtype, stat
        np.testing.assert_array_equal(got.pooled[stat], array, err_msg=stat)
    assert sorted(got.seq) == sorted(want.seq)
    for layer, frames in want.seq.items():
        assert len(got.seq[layer]) == len(frames)
        for uid, a, b in zip(want.ids, got.seq[layer], frames, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b, err_msg=f"{layer} {uid}")
    if compare_attrs:
        assert got.attrs == want.attrs


def assert_matches_rows(content: Content, rows: list[Row], layout: StoreLayout = LAYOUT) -> None:
    """The store holds exactly ``rows`` in that order, values cast to the layout dtypes."""
    assert content.ids == [r.uid for r in rows]
    assert content.fingerprints == [r.fingerprint for r in rows]
    lengths = [r.length for r in rows]
    np.testing.assert_array_equal(content.offsets, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    for stat, (n_layers, dim) in layout.pooled.items():
        got = content.pooled[stat]
        assert got.shape == (len(rows), n_layers, dim)
        assert got.dtype == np.dtype(layout.pooled_dtype)
        want = np.stack([r.pooled[stat] for r in rows]).astype(layout.pooled_dtype) if rows else got
        np.testing.assert_array_equal(got, want, err_msg=stat)
    for layer, dim in layout.seq.items():
        for row, got in zip(rows, content.seq[layer], strict=True):
            assert got.shape == (row.length, dim)
            assert got.dtype == np.dtype(layout.seq_dtype)
            np.testing.assert_array_equal(got, row.seq[layer].astype(layout.seq_dtype), err_msg=f"{layer} {row.uid}")


def tamper(path: Path, name: str, index: Any, value: Any) -> None:
    """Overwrite ``store[name][index] = value`` in a finished store, behind the reader's back."""
    if path.suffix == ".h5":
        with h5py.File(path, "r+") as f:
            f[name][index] = value
    else:
        zarr.open_group(str(path), mode="r+")[name][index] = value


def set_attr(path: Path, key: str, value: Any) -> None:
    if path.suffix == ".h5":
        with h5py.File(path, "r+") as f:
            f.attrs[key] = value
    else:
        zarr.open_group(str(path), mode="r+").attrs[key] = value


def writer_open(path: Path, **kwargs: Any) -> CacheWriter:
    kwargs.setdefault("layout", LAYOUT)
    kwargs.setdefault("attrs", make_attrs())
    return CacheWriter.open(path, **kwargs)


def subprocess_env() -> dict[str, str]:
    """This environment with the repository first on ``PYTHONPATH``: a child ``python -c`` imports this ``ser``
    and these test helpers."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
