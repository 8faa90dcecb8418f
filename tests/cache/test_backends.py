"""Backends: the raw read paths (HDF5 memory maps, Zarr chunk-file maps) agree with h5py / zarr, and the
Zarr fast path steps aside for metadata it does not know."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from ser.cache import backends
from ser.cache.assemble import chunk_rows
from ser.cache.backends import Hdf5File, ZarrFile, raw_zarr_layout
from ser.cache.format import COMPRESSIONS, CacheError, check_compression
from ser.cache.reader import CacheReader
from tests.cache.storeutil import make_rows, writer_open

N_ROWS = 22
SELECTIONS = [
    ...,
    slice(None),
    slice(0, 1),
    slice(5, 6),
    slice(6, 13),
    slice(3, 20),
    slice(-4, None),
    slice(20, 3),
    slice(21, 99),
    slice(0, 0),
]


def _store(tmp_path: Path, suffix: str, compression: str | None = None) -> Path:
    """22 rows with 6-row pooled chunks (the writer spreads 22 rows over 4 chunks) and 5-frame seq chunks."""
    path = tmp_path / f"chunked{suffix}"
    writer = writer_open(path, segment_bytes=2000)
    for row in make_rows(N_ROWS):
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
    writer.finalize(compression=compression, pooled_chunk_bytes=7 * 4 * 6 * 4, seq_chunk_bytes=5 * 6 * 2)
    return path


def _reference(path: Path, name: str, selection: object) -> np.ndarray:
    """What the library itself reads."""
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            return f[name][selection]
    return np.asarray(zarr.open_group(str(path), mode="r")[name][selection])


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("name", ["pooled/mean", "seq/layer_01", "ids", "seq/offsets"])
def test_raw_reads_equal_library_reads(tmp_path: Path, suffix: str, name: str) -> None:
    path = _store(tmp_path, suffix)
    store = Hdf5File(path, "r") if suffix == ".h5" else ZarrFile(path, "r")
    for selection in [*SELECTIONS, np.array([0, 7, 21])]:
        got = store.read(name, selection)
        want = _reference(path, name, selection)
        assert got.dtype == want.dtype and got.shape == want.shape, (name, selection)
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {selection}")
        assert got.flags.writeable and got.flags.c_contiguous  # a copy, not a view of a map
    store.close()


def test_the_fast_paths_are_taken_for_plain_stores(tmp_path: Path) -> None:
    h5 = Hdf5File(_store(tmp_path, ".h5"), "r")
    assert h5._memory_map("pooled/mean") is not None
    zarr_file = ZarrFile(_store(tmp_path, ".zarr"), "r")
    layout = zarr_file._raw_layout("pooled/mean")
    assert layout is not None
    assert (layout.chunk_rows, layout.shape, layout.dtype) == (6, (N_ROWS, 4, 6), np.dtype("<f4"))
    zarr_file.read("pooled/mean")
    assert sorted(zarr_file._chunk_maps) == [("pooled/mean", c) for c in range(4)]


def test_compressed_zarr_uses_the_generic_path(tmp_path: Path) -> None:
    path = _store(tmp_path, ".zarr", compression="zstd")
    assert raw_zarr_layout(path / "pooled" / "mean") is None
    with CacheReader(path) as reader:
        np.testing.assert_array_equal(reader.pooled("mean"), _reference(path, "pooled/mean", ...))


@pytest.mark.parametrize(
    "edit", ["codec", "key-encoding", "separator", "grid", "endian", "garbage", "missing", "fill-nan", "v2"]
)
def test_unknown_zarr_metadata_falls_back_to_the_generic_path(tmp_path: Path, edit: str) -> None:
    array_dir = _store(tmp_path, ".zarr") / "pooled" / "mean"
    meta_path = array_dir / "zarr.json"
    meta = json.loads(meta_path.read_text())
    assert raw_zarr_layout(array_dir) is not None
    if edit == "codec":
        meta["codecs"].append({"name": "crc32c"})
    elif edit == "key-encoding":
        meta["chunk_key_encoding"] = {"name": "v2", "configuration": {"separator": "."}}
    elif edit == "separator":
        meta["chunk_key_encoding"]["configuration"]["separator"] = "."
    elif edit == "grid":
        meta["chunk_grid"] = {"name": "rectilinear"}
    elif edit == "endian":
        meta["codecs"][0]["configuration"]["endian"] = "big"
    elif edit == "fill-nan":
        meta["fill_value"] = "NaN"
    elif edit == "v2":
        meta["zarr_format"] = 2
    if edit == "garbage":
        meta_path.write_text("{not json")
    elif edit == "missing":
        meta_path.unlink()
    else:
        meta_path.write_text(json.dumps(meta))
    assert raw_zarr_layout(array_dir) is None


def test_reads_survive_a_fast_path_that_cannot_be_set_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the detection finds unusable (e.g. a zarr release that changes its metadata), reads go through
    zarr and return the same values."""
    path = _store(tmp_path, ".zarr")
    with CacheReader(path) as reader:
        want = reader.pooled("mean"), [reader.sequence(uid, "layer_01") for uid in reader.ids]
    monkeypatch.setattr(backends, "raw_zarr_layout", lambda array_dir: None)
    with CacheReader(path) as reader:
        assert reader._file()._raw_layout("pooled/mean") is None
        np.testing.assert_array_equal(reader.pooled("mean"), want[0])
        for uid, frames in zip(reader.ids, want[1], strict=True):
            np.testing.assert_array_equal(reader.sequence(uid, "layer_01"), frames)


def test_a_missing_chunk_file_is_a_cache_error_not_zeros(tmp_path: Path) -> None:
    path = _store(tmp_path, ".zarr")
    (path / "pooled" / "mean" / "c" / "1" / "0" / "0").unlink()
    store = ZarrFile(path, "r")
    np.testing.assert_array_equal(store.read("pooled/mean", slice(0, 6)), _reference(path, "pooled/mean", slice(0, 6)))
    with pytest.raises(CacheError, match=r"c/1/0/0: chunk file is missing; the store is damaged"):
        store.read("pooled/mean")


def test_truncated_chunk_file_is_a_cache_error(tmp_path: Path) -> None:
    path = _store(tmp_path, ".zarr")
    chunk = path / "pooled" / "mean" / "c" / "2" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    store = ZarrFile(path, "r")
    np.testing.assert_array_equal(
        store.read("pooled/mean", slice(0, 12)), _reference(path, "pooled/mean", slice(0, 12))
    )
    with pytest.raises(CacheError, match=r"c/2/0/0: chunk file is shorter than its array says; the store is damaged"):
        store.read("pooled/mean")


def test_chunk_maps_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "MAX_MAPPED_CHUNKS", 3)
    path = _store(tmp_path, ".zarr")
    store = ZarrFile(path, "r")
    offsets = store.read("seq/offsets")
    for row in range(N_ROWS):
        got = store.read("seq/layer_01", slice(int(offsets[row]), int(offsets[row + 1])))
        np.testing.assert_array_equal(
            got, _reference(path, "seq/layer_01", slice(int(offsets[row]), int(offsets[row + 1])))
        )
        assert len(store._chunk_maps) <= 3
    store.close()
    assert not store._chunk_maps


def test_chunk_rows_spread_rows_evenly() -> None:
    assert chunk_rows(96, 7 * 96, 22) == 6  # 4 chunks of 6 (24 rows stored), not 4 of 7 (28)
    assert chunk_rows(96, 7 * 96, 21) == 7
    assert chunk_rows(96, 7 * 96, 5) == 5  # fewer rows than one chunk: one chunk
    assert chunk_rows(1536, 4 << 20, 1_300_000) == 2726  # 2730 fit in 4 MiB; 477 chunks of 2726
    assert chunk_rows(39936, 16 << 20, 5531) == 396  # 14 chunks: 13 padding rows instead of 349
    assert chunk_rows(1000, 10, 3) == 1  # rows larger than the target
    assert chunk_rows(96, 7 * 96, 0) == 1


def test_zarr_padding_stays_under_a_row_per_chunk(tmp_path: Path) -> None:
    path = _store(tmp_path, ".zarr")
    files = sorted((path / "pooled" / "mean" / "c").rglob("0"))
    files = [f for f in files if f.is_file()]
    assert [f.stat().st_size for f in files] == [6 * 4 * 6 * 4] * 4  # 24 rows stored for 22


def test_every_named_compression_writes_and_reads_back(tmp_path: Path) -> None:
    assert set(COMPRESSIONS["zarr"]) == set(ZarrFile._CODECS)
    rows = make_rows(3)
    for backend, names in COMPRESSIONS.items():
        for name in names:
            path = tmp_path / f"{name}.{'h5' if backend == 'hdf5' else 'zarr'}"
            writer = writer_open(path)
            for row in rows:
                writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
            writer.finalize(compression=name)
            with CacheReader(path) as reader:
                np.testing.assert_array_equal(
                    reader.pooled("mean"), np.stack([r.pooled["mean"] for r in rows]).astype("f4")
                )


def test_compression_names_are_checked_per_backend(tmp_path: Path) -> None:
    check_compression(tmp_path / "a.h5", None)
    check_compression(tmp_path / "a.h5", "lzf")
    check_compression(tmp_path / "a.zarr", "blosc")
    with pytest.raises(
        CacheError,
        match=r"a\.zarr: Zarr stores take --compression zstd or gzip or blosc, not "
        r"'lzf' \(lzf is for \.h5 stores\)",
    ):
        check_compression(tmp_path / "a.zarr", "lzf")
    with pytest.raises(CacheError, match=r"must end in \.h5 \(HDF5\) or \.zarr"):
        check_compression(tmp_path / "a.npy", None)


def test_a_group_where_an_array_belongs_is_a_cache_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.zarr"
    zarr.open_group(store=str(path), mode="w").create_group("pooled")
    store = ZarrFile(path, "r")
    for read in (store.shape, store.dtype, store.read):
        with pytest.raises(CacheError, match=r"pooled: a group where an array belongs; the store is damaged"):
            read("pooled")


def test_zarr_store_modes_follow_h5py_words(tmp_path: Path) -> None:
    path = tmp_path / "modes.zarr"
    ZarrFile(path, "w").create("x", (2,), "float32", None, None)
    ZarrFile(path, "a").write("x", 0, np.ones(2, dtype=np.float32))  # "a": read and write the existing store
    np.testing.assert_array_equal(ZarrFile(path, "r").read("x"), np.ones(2, dtype=np.float32))
    with pytest.raises(CacheError, match=r"unknown store-file mode 'rw'"):
        ZarrFile(path, "rw")
