"""CacheReader: refusals with actionable messages, selections by id and layer, fingerprints, processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from ser.cache.format import FORMAT_VERSION, CacheError, partial_path
from ser.cache.reader import CacheReader
from ser.cache.verify import verify_store
from tests.cache.storeutil import BACKENDS, LAYOUT, MANIFEST_SHA, Row, make_rows, set_attr, write_store, writer_open

REJECTED = {"rej-a": "audio too short (0.1 s)", "rej-b": "non-finite values in mean"}


@pytest.fixture(params=BACKENDS)
def suffix(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rows() -> list[Row]:
    return make_rows(9)


@pytest.fixture
def store(tmp_path: Path, suffix: str, rows: list[Row]) -> Path:
    return write_store(tmp_path / f"feats{suffix}", rows, rejected=REJECTED)


# ------------------------------------------------------------------------------------------------ refusals


def test_missing_store(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"nothing{suffix}"
    with pytest.raises(CacheError, match=f"{re.escape(str(path))}: no such cache store; create it with `ser extract`"):
        CacheReader(path)


def test_partial_store_is_refused_by_final_and_partial_path(tmp_path: Path, suffix: str, rows: list[Row]) -> None:
    path = tmp_path / f"feats{suffix}"
    writer = writer_open(path)
    writer.add(rows[0].uid, rows[0].fingerprint, rows[0].pooled, rows[0].seq)
    writer.close()
    with pytest.raises(
        CacheError,
        match=f"not finished yet \\({re.escape(partial_path(path).name)} exists\\); "
        "run the same `ser extract` command again to resume",
    ):
        CacheReader(path)
    with pytest.raises(
        CacheError,
        match=f"is an unfinished store; run the same `ser extract` command again to resume "
        f"and finish it \\(it will be written to {re.escape(str(path))}\\)",
    ):
        CacheReader(partial_path(path))


def test_unknown_format_version_is_refused(store: Path) -> None:
    set_attr(store, "format_version", FORMAT_VERSION + 1)
    with pytest.raises(
        CacheError,
        match=f"uses cache format version {FORMAT_VERSION + 1}; this ser reads version {FORMAT_VERSION}. Re-extract",
    ):
        CacheReader(store)


def test_status_not_complete_is_refused(store: Path) -> None:
    set_attr(store, "status", "partial")
    with pytest.raises(CacheError, match="has status 'partial'; only complete stores can be read"):
        CacheReader(store)


def test_foreign_store_is_refused(store: Path) -> None:
    set_attr(store, "format", "something-else")
    with pytest.raises(CacheError, match="is not a ser cache store \\(format attribute 'something-else'\\)"):
        CacheReader(store)


@pytest.mark.parametrize("name", ["feats.npz", "feats", "feats.H5X"])
def test_wrong_suffix_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CacheError, match=r"must end in \.h5 \(HDF5\) or \.zarr \(Zarr\)"):
        CacheReader(tmp_path / name)


def test_unreadable_files_give_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(CacheError, match="cannot open as HDF5"):
        CacheReader(tmp_path / "junk.h5")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(CacheError, match="cannot open as a Zarr group"):
        CacheReader(tmp_path / "empty.zarr")


def test_refusal_releases_the_file(tmp_path: Path, rows: list[Row]) -> None:
    store = write_store(tmp_path / "feats.h5", rows)
    set_attr(store, "format_version", FORMAT_VERSION + 1)
    with pytest.raises(CacheError, match="format version") as refused:
        CacheReader(store)
    assert refused.value is not None  # the caught error (and its traceback) is still alive here
    with h5py.File(store, "r+") as f:  # e.g. to repair the attribute
        f.attrs["format_version"] = FORMAT_VERSION
    assert len(CacheReader(store)) == len(rows)


# ------------------------------------------------------------------------------------------------ metadata


def test_metadata(store: Path, rows: list[Row]) -> None:
    with CacheReader(store) as reader:
        assert len(reader) == len(rows)
        assert reader.ids == [r.uid for r in rows]
        assert rows[3].uid in reader and "rej-a" not in reader and "nope" not in reader
        assert reader.rejected == REJECTED
        assert reader.layout == LAYOUT
        np.testing.assert_array_equal(reader.lengths, [r.length for r in rows])
        assert reader.attrs["extractor"]["config"] == {"model": "tiny", "layers": [0, 1, 2, 3]}
        assert reader.attrs["upstream"] == {"model": "none", "sample_rate": 16000}


# ------------------------------------------------------------------------------------------------ pooled


def test_pooled_selects_ids_and_layers_in_the_asked_order(store: Path, rows: list[Row]) -> None:
    by_id = {r.uid: r for r in rows}
    ids = [rows[7].uid, rows[0].uid, rows[4].uid, rows[0].uid]
    with CacheReader(store) as reader:
        got = reader.pooled("mean", ids=ids, layers=[3, 1])
        assert got.shape == (4, 2, 6)
        assert got.dtype == np.float32
        want = np.stack([by_id[u].pooled["mean"][[3, 1]] for u in ids]).astype(np.float32)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            reader.pooled("std", layers=[-1])[:, 0], np.stack([r.pooled["std"][3] for r in rows]).astype(np.float32)
        )
        np.testing.assert_array_equal(
            reader.pooled("cls", ids=[rows[2].uid]), rows[2].pooled["cls"][None].astype(np.float32)
        )
        assert reader.pooled("mean", ids=[]).shape == (0, 4, 6)
        full = reader.pooled("mean")
        np.testing.assert_array_equal(full, np.stack([r.pooled["mean"] for r in rows]).astype(np.float32))


def test_pooled_refuses_unknown_stat_and_layers(store: Path) -> None:
    with CacheReader(store) as reader:
        with pytest.raises(CacheError, match="has no pooled statistic 'max'; it has \\['cls', 'mean', 'std'\\]"):
            reader.pooled("max")
        with pytest.raises(CacheError, match="pooled mean has 4 layers; layers \\[4, -5\\] do not exist"):
            reader.pooled("mean", layers=[0, 4, -5])


def test_rejected_and_absent_ids_are_named_separately(store: Path, rows: list[Row]) -> None:
    with CacheReader(store) as reader, pytest.raises(CacheError) as info:
        reader.pooled("mean", ids=[rows[0].uid, "rej-b", "ghost-1", "rej-a", "ghost-2"])
    message = str(info.value)
    assert "4 requested ids are not in the store" in message
    rejected_part, absent_part = message.split("; ", 1)[1].split("; ")
    assert rejected_part == (
        "2 were rejected at extraction: rej-b (non-finite values in mean), rej-a (audio too short (0.1 s))"
    )
    assert absent_part.startswith("2 were never extracted: ghost-1, ghost-2 (extract them with `ser extract`")
    assert rows[0].uid not in message


def test_long_lists_of_missing_ids_are_shortened(store: Path) -> None:
    with CacheReader(store) as reader, pytest.raises(CacheError) as info:
        reader.rows_of([f"ghost-{i}" for i in range(8)])
    message = str(info.value)
    assert "8 were never extracted: ghost-0, ghost-1, ghost-2, ghost-3, ghost-4 (and 3 more)" in message
    assert "ghost-5" not in message and "rejected" not in message


def test_rows_of(store: Path, rows: list[Row]) -> None:
    with CacheReader(store) as reader:
        got = reader.rows_of([rows[5].uid, rows[1].uid])
    assert got.dtype == np.int64
    assert got.tolist() == [5, 1]


# ------------------------------------------------------------------------------------------------ fingerprints


def test_check_rows_detects_changed_fingerprints(store: Path, rows: list[Row]) -> None:
    expected = {r.uid: r.fingerprint for r in rows}
    with CacheReader(store) as reader:
        reader.check_rows(expected)  # unchanged: no error
        reader.check_rows({**expected, "ghost": "x", "rej-a": "y"})  # absent/rejected ids are not its business
        changed = {**expected, rows[2].uid: "edited", rows[6].uid: "edited too"}
        with pytest.raises(
            CacheError,
            match=f"2 manifest rows changed since this store was extracted \\(audio path, "
            f"segment, the audio file's content or, for text stores, the text "
            f"differ\\): {rows[2].uid}, {rows[6].uid}\\. "
            "Their features were computed from the old rows: re-run `ser extract` "
            "with this manifest",
        ):
            reader.check_rows(changed)
        assert reader.changed_rows(changed) == [rows[2].uid, rows[6].uid]


def test_manifest_sha256_is_compared_with_the_one_recorded_at_extraction(store: Path) -> None:
    with CacheReader(store) as reader:
        assert reader.manifest_sha256 == MANIFEST_SHA
        assert reader.manifest_note(MANIFEST_SHA) is None
        note = reader.manifest_note("f" * 64, "new.jsonl")
    assert note == (
        "new.jsonl (sha256 ffffffffffff) is not the manifest this store was extracted from (sha256 "
        "000000000000, m.csv); it was edited or rebuilt since. Labels and splits may change freely, so "
        "every row's fingerprint (audio path, segment, text) is checked instead"
    )
    set_attr(store, "manifest", '{"path": null, "sha256": null}')
    with CacheReader(store) as reader:
        assert reader.manifest_sha256 is None
        assert "records no manifest sha256" in reader.manifest_note("f" * 64)


def test_numeric_attributes_are_plain_python_values(store: Path) -> None:
    with CacheReader(store) as reader:
        assert type(reader.attrs["n_items"]) is int and type(reader.attrs["n_rejected"]) is int
        json.dumps(reader.attrs)  # what resuming from a finished store's attributes needs


# ------------------------------------------------------------------------------------------------ sequences


def test_sequence_values_and_zero_length_rows(store: Path, rows: list[Row]) -> None:
    assert [r.length for r in rows][:3] == [3, 0, 5]
    with CacheReader(store) as reader:
        for row in rows:
            for layer, dim in LAYOUT.seq.items():
                got = reader.sequence(row.uid, layer)
                assert got.shape == (row.length, dim)
                assert got.dtype == np.float16
                np.testing.assert_array_equal(got, row.seq[layer].astype(np.float16))


def test_sequence_of_an_unstored_layer_or_missing_id(store: Path, rows: list[Row]) -> None:
    with CacheReader(store) as reader:
        with pytest.raises(
            CacheError, match="stores no sequence for 'layer_02'; stored layers: \\['layer_01', 'layer_03'\\]"
        ):
            reader.sequence(rows[0].uid, "layer_02")
        with pytest.raises(CacheError, match="1 were rejected at extraction: rej-a"):
            reader.sequence("rej-a", "layer_01")


# ------------------------------------------------------------------------------------------------ processes


def _read_in_child(reader: CacheReader, uid: str) -> dict[str, Any]:
    pooled = reader.pooled("mean", ids=[uid])
    seq = reader.sequence(uid, "layer_01")
    return {"pid": os.getpid(), "handle_pid": reader._pid, "pooled": pooled, "seq": seq}


def _child_target(reader: CacheReader, uid: str, conn: Any) -> None:
    try:
        conn.send(_read_in_child(reader, uid))
    except BaseException as err:
        conn.send({"error": repr(err)})
    finally:
        conn.close()


def test_pickle_round_trip_drops_the_handle(store: Path, rows: list[Row]) -> None:
    reader = CacheReader(store)
    reader.pooled("mean")  # opens the handle
    assert reader._store is not None and reader._pid == os.getpid()
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._store is None and clone._pid == -1
    assert clone.ids == reader.ids and clone.rejected == reader.rejected and clone.layout == reader.layout
    np.testing.assert_array_equal(clone.pooled("std", ids=[rows[4].uid]), reader.pooled("std", ids=[rows[4].uid]))
    assert clone._pid == os.getpid()
    np.testing.assert_array_equal(clone.sequence(rows[0].uid, "layer_03"), reader.sequence(rows[0].uid, "layer_03"))
    reader.close()
    clone.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_works_in_a_child_process(store: Path, rows: list[Row], method: str) -> None:
    """fork: the child inherits the open reader (no pickling) and must reopen; spawn: it gets a pickled copy."""
    reader = CacheReader(store)
    uid = rows[2].uid
    parent_pooled = reader.pooled("mean", ids=[uid])  # the parent's handle is open before the child starts
    ctx = multiprocessing.get_context(method)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_target, args=(reader, uid, send))
    child.start()
    send.close()
    assert receive.poll(60), "the child did not answer"
    result = receive.recv()
    child.join(30)
    assert child.exitcode == 0
    assert "error" not in result, result.get("error")
    assert result["pid"] == child.pid != os.getpid()
    assert result["handle_pid"] == child.pid  # the child opened its own handle
    assert reader._pid == os.getpid()
    np.testing.assert_array_equal(result["pooled"], parent_pooled)
    np.testing.assert_array_equal(result["seq"], rows[2].seq["layer_01"].astype(np.float16))
    # The parent's handle still works after the child is gone.
    np.testing.assert_array_equal(reader.sequence(uid, "layer_01"), result["seq"])
    reader.close()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_reads_across_many_small_chunks(tmp_path: Path, suffix: str, compression: str | None) -> None:
    """Row and frame ranges that straddle chunk boundaries read back exactly (plain and compressed chunks)."""
    rows = make_rows(40)
    path = tmp_path / f"chunked{suffix}"
    writer = writer_open(path, segment_bytes=3000)
    for row in rows:
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
    writer.finalize(compression=compression, pooled_chunk_bytes=7 * 4 * 6 * 4, seq_chunk_bytes=5 * 6 * 2)
    by_id = {r.uid: r for r in rows}
    with CacheReader(path) as reader:
        np.testing.assert_array_equal(reader.pooled("mean"), np.stack([r.pooled["mean"] for r in rows]).astype("f4"))
        picked = [rows[i].uid for i in (39, 6, 7, 13, 0)]
        np.testing.assert_array_equal(
            reader.pooled("std", ids=picked, layers=[2]),
            np.stack([by_id[u].pooled["std"][[2]] for u in picked]).astype("f4"),
        )
        for row in rows:
            np.testing.assert_array_equal(reader.sequence(row.uid, "layer_01"), row.seq["layer_01"].astype("f2"))
    assert verify_store(path, {r.uid: r.fingerprint for r in rows}).ok
