"""CacheWriter: round trips, dtypes, rejection, validation, resume, locking, leftovers (both backends)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ser.cache import writer as writer_module
from ser.cache.format import FORMAT_VERSION, CacheError, StoreLayout, partial_path
from ser.cache.reader import CacheReader
from ser.cache.verify import verify_store
from ser.cache.writer import CacheWriter, partial_summary
from tests.cache.storeutil import (
    BACKENDS,
    CONFIG_HASH,
    LAYOUT,
    Row,
    assert_matches_rows,
    assert_same_content,
    make_attrs,
    make_row,
    make_rows,
    read_content,
    subprocess_env,
    write_store,
    writer_open,
)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / f"feats{request.param}"


def _segments(path: Path) -> list[str]:
    return sorted(p.name for p in partial_path(path).glob("seg-*"))


# ------------------------------------------------------------------------------------------------ round trip


def test_round_trip_pooled_and_sequences(store: Path) -> None:
    rows = make_rows(12)
    rows.append(make_row("ünïcode-id", seed=99, length=4))
    assert [r.length for r in rows].count(0) >= 3
    rejected = {"bad-1": "audio too short (0.1 s)", "bad-2": "decode failed: EOF"}
    out = write_store(store, rows, rejected=rejected, segment_bytes=1500)

    assert out == store
    assert store.exists()
    assert not partial_path(store).exists()
    assert not store.with_name(store.name + ".assembling").exists()
    content = read_content(store)
    assert_matches_rows(content, rows)
    assert content.rejected == list(rejected.items())
    assert content.attrs["extractor"] == make_attrs()["extractor"]
    assert content.attrs["manifest"]["sha256"] == make_attrs()["manifest"]["sha256"]
    assert content.attrs["status"] == "complete"
    assert content.attrs["format_version"] == FORMAT_VERSION
    assert int(content.attrs["n_items"]) == len(rows)
    assert int(content.attrs["n_rejected"]) == 2
    with CacheReader(store) as reader:
        np.testing.assert_array_equal(reader.lengths, [r.length for r in rows])
        assert len(reader) == len(rows)
        assert reader.layout == LAYOUT
    assert verify_store(store, {r.uid: r.fingerprint for r in rows} | dict.fromkeys(rejected, "x")).ok


def test_rows_spread_over_many_segments_keep_write_order(store: Path) -> None:
    rows = make_rows(40)
    writer = writer_open(store, segment_bytes=1)  # every row is its own segment
    for row in rows:
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
    assert len(_segments(store)) == 40
    writer.finalize()
    content = read_content(store)
    assert content.ids == [r.uid for r in rows] != sorted(r.uid for r in rows)
    assert_matches_rows(content, rows)


@pytest.mark.parametrize(
    ("pooled_dtype", "seq_dtype"), [("float32", "float16"), ("float16", "float32"), ("float64", "float16")]
)
def test_layout_dtypes_are_honoured(store: Path, pooled_dtype: str, seq_dtype: str) -> None:
    layout = StoreLayout(pooled={"mean": (3, 5)}, seq={"layer_00": 5}, pooled_dtype=pooled_dtype, seq_dtype=seq_dtype)
    rows = make_rows(6, layout)
    write_store(store, rows, layout=layout)
    content = read_content(store)
    assert content.pooled["mean"].dtype == np.dtype(pooled_dtype)
    assert all(s.dtype == np.dtype(seq_dtype) for s in content.seq["layer_00"])
    assert_matches_rows(content, rows, layout)
    # Within the precision of the dtype, the values are the ones written.
    eps = {"float16": 1e-3, "float32": 1e-6, "float64": 1e-12}
    for row, got in zip(rows, content.pooled["mean"], strict=True):
        np.testing.assert_allclose(got, row.pooled["mean"], rtol=eps[pooled_dtype], atol=eps[pooled_dtype])
    for row, got in zip(rows, content.seq["layer_00"], strict=True):
        np.testing.assert_allclose(got, row.seq["layer_00"], rtol=eps[seq_dtype], atol=eps[seq_dtype])


def test_store_without_sequences(store: Path) -> None:
    layout = StoreLayout(pooled={"mean": (2, 3)})
    rows = make_rows(5, layout)
    writer = writer_open(store, layout=layout)
    writer.add(rows[0].uid, rows[0].fingerprint, rows[0].pooled)  # seq omitted
    for row in rows[1:]:
        writer.add(row.uid, row.fingerprint, row.pooled, {})
    writer.finalize()
    content = read_content(store)
    assert_matches_rows(content, rows, layout)
    np.testing.assert_array_equal(content.offsets, np.zeros(6, dtype=np.int64))
    with CacheReader(store) as reader, pytest.raises(CacheError, match=r"stores no sequence for 'layer_01'.*--seq"):
        reader.sequence(rows[0].uid, "layer_01")


def test_store_with_only_rejected_rows(store: Path) -> None:
    writer = writer_open(store)
    writer.reject("a", "silent")
    writer.reject("b", "too long")
    writer.finalize()
    content = read_content(store)
    assert content.ids == []
    assert content.rejected == [("a", "silent"), ("b", "too long")]
    np.testing.assert_array_equal(content.offsets, [0])
    assert content.pooled["mean"].shape == (0, 4, 6)
    assert verify_store(store).ok


def test_context_manager_flushes_and_releases(store: Path) -> None:
    row = make_rows(1)[0]
    with writer_open(store) as writer:
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
        assert _segments(store) == []  # still buffered (segment_bytes is 64 MiB by default)
    assert _segments(store) == ["seg-000000"]
    with writer_open(store) as again:  # the lock was released
        assert again.done_ids == {row.uid}


# ------------------------------------------------------------------------------------------------ rejection


def test_non_finite_rows_become_rejected(store: Path) -> None:
    good, nan_pooled, inf_seq, good2 = make_rows(4)
    nan_pooled.pooled["std"][2, 1] = np.nan
    inf_seq.seq["layer_03"] = np.full((2, 3), -np.inf)
    inf_seq.seq["layer_01"] = np.zeros((2, 6))
    writer = writer_open(store)
    assert writer.add(good.uid, good.fingerprint, good.pooled, good.seq) is True
    assert writer.add(nan_pooled.uid, nan_pooled.fingerprint, nan_pooled.pooled, nan_pooled.seq) is False
    assert writer.add(inf_seq.uid, inf_seq.fingerprint, inf_seq.pooled, inf_seq.seq) is False
    assert writer.add(good2.uid, good2.fingerprint, good2.pooled, good2.seq) is True
    assert writer.rejected == {nan_pooled.uid: "non-finite values in std", inf_seq.uid: "non-finite values in layer_03"}
    assert len(writer) == 2
    assert writer.done_ids == {good.uid, good2.uid, nan_pooled.uid, inf_seq.uid}
    writer.finalize()
    content = read_content(store)
    assert content.ids == [good.uid, good2.uid]
    assert content.rejected == [
        (nan_pooled.uid, "non-finite values in std"),
        (inf_seq.uid, "non-finite values in layer_03"),
    ]
    assert_matches_rows(content, [good, good2])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_values_that_overflow_the_store_dtype_are_not_stored_as_inf(store: Path) -> None:
    row = make_row("loud", seed=1, length=2)
    row.seq["layer_01"][0, 0] = 7.0e4  # finite in float64/float32, inf in float16
    writer = writer_open(store)
    try:
        stored = writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
    except CacheError:
        stored = False  # refusing the row loudly would honour the contract too
    writer.finalize()
    assert verify_store(store).ok, "the store holds an Inf the writer let through"
    assert not stored


def test_reject_after_write_and_write_after_reject_are_refused(store: Path) -> None:
    a, b = make_rows(2)
    writer = writer_open(store)
    writer.add(a.uid, a.fingerprint, a.pooled, a.seq)
    with pytest.raises(CacheError, match=f"{a.uid!r} was already written; it cannot also be rejected"):
        writer.reject(a.uid, "oops")
    writer.reject(b.uid, "too short")
    with pytest.raises(CacheError, match=f"{b.uid!r} was already written"):
        writer.add(b.uid, b.fingerprint, b.pooled, b.seq)
    writer.finalize()
    content = read_content(store)
    assert content.ids == [a.uid]
    assert content.rejected == [(b.uid, "too short")]


def test_duplicate_id_refused_buffered_flushed_and_after_resume(store: Path) -> None:
    a, b, c = make_rows(3)
    writer = writer_open(store)
    writer.add(a.uid, a.fingerprint, a.pooled, a.seq)
    with pytest.raises(CacheError, match=f"id {a.uid!r} was already written"):  # still in the buffer
        writer.add(a.uid, a.fingerprint, a.pooled, a.seq)
    writer.flush()
    with pytest.raises(CacheError, match=f"id {a.uid!r} was already written"):  # in a segment
        writer.add(a.uid, "another fingerprint", b.pooled, b.seq)
    writer.add(b.uid, b.fingerprint, b.pooled, b.seq)
    writer.close()
    writer = writer_open(store)
    with pytest.raises(CacheError, match=f"id {b.uid!r} was already written"):  # from the previous session
        writer.add(b.uid, b.fingerprint, b.pooled, b.seq)
    writer.add(c.uid, c.fingerprint, c.pooled, c.seq)
    writer.finalize()
    assert_matches_rows(read_content(store), [a, b, c])


# ------------------------------------------------------------------------------------------------ validation


def _bad_rows() -> dict[str, Row]:
    base = make_row("victim-7", seed=7, length=3)

    def variant(**changes: object) -> Row:
        pooled = dict(base.pooled)
        seq = dict(base.seq)
        for key, value in changes.items():
            kind, name = key.split("__")
            target = pooled if kind == "pooled" else seq
            if value is None:
                del target[name]
            else:
                target[name] = value  # type: ignore[assignment]
        return Row(base.uid, base.fingerprint, pooled, seq)

    return {
        "missing stat": variant(pooled__cls=None),
        "extra stat": variant(pooled__max=np.zeros((4, 6))),
        "pooled layers": variant(pooled__mean=np.zeros((5, 6))),
        "pooled dim": variant(pooled__std=np.zeros((4, 7))),
        "pooled flat": variant(pooled__cls=np.zeros(10)),
        "missing layer": variant(seq__layer_03=None),
        "extra layer": variant(seq__layer_09=np.zeros((3, 6))),
        "seq dim": variant(seq__layer_03=np.zeros((3, 4))),
        "seq 1-d": variant(seq__layer_01=np.zeros(3), seq__layer_03=np.zeros(3)),
        "seq lengths differ": variant(seq__layer_03=np.zeros((4, 3))),
    }


@pytest.mark.parametrize("case", list(_bad_rows()))
def test_shape_and_key_mismatches_name_the_id(store: Path, case: str) -> None:
    bad = _bad_rows()[case]
    writer = writer_open(store)
    with pytest.raises(CacheError, match="'victim-7'"):
        writer.add(bad.uid, bad.fingerprint, bad.pooled, bad.seq)
    # Nothing was recorded: the same id can still be written correctly.
    assert writer.done_ids == set()
    assert writer.rejected == {}
    good = make_row("victim-7", seed=7, length=3)
    assert writer.add(good.uid, good.fingerprint, good.pooled, good.seq)
    writer.finalize()
    assert_matches_rows(read_content(store), [good])


def test_missing_sequences_for_a_seq_layout_are_refused(store: Path) -> None:
    row = make_row("no-seq", seed=3, length=2)
    writer = writer_open(store)
    with pytest.raises(CacheError, match=r"'no-seq' has pooled .* / seq \[\], the store expects .*layer_01"):
        writer.add(row.uid, row.fingerprint, row.pooled)
    writer.close()


# ------------------------------------------------------------------------------------------------ resume


def _write(writer: CacheWriter, rows: list[Row]) -> None:
    for row in rows:
        if row.uid in writer.done_ids:
            continue
        if row.uid.endswith("0"):
            writer.reject(row.uid, f"rejected {row.uid}")
        else:
            writer.add(row.uid, row.fingerprint, row.pooled, row.seq)


def test_resume_after_close_equals_uninterrupted_run(tmp_path: Path, store: Path) -> None:
    rows = make_rows(30)
    reference = tmp_path / f"reference{store.suffix}"
    writer = writer_open(reference, segment_bytes=2000)
    _write(writer, rows)
    writer.finalize()

    first, second = rows[:9], rows[9:20]
    writer = writer_open(store, segment_bytes=2000)
    _write(writer, first)
    writer.close()  # flushes the buffer; no finalize
    assert not store.exists()
    assert partial_path(store).is_dir()

    writer = writer_open(store, segment_bytes=2000)
    assert writer.done_ids == {r.uid for r in first}
    assert len(writer) == sum(not r.uid.endswith("0") for r in first)
    assert set(writer.rejected) == {r.uid for r in first if r.uid.endswith("0")}
    _write(writer, first + second)  # the resume contract: done ids are skipped
    writer.close()

    writer = writer_open(store, segment_bytes=2000)
    assert writer.done_ids == {r.uid for r in first + second}
    _write(writer, rows)
    writer.finalize()

    assert any(r.uid.endswith("0") for r in rows)
    assert_same_content(read_content(store), read_content(reference))
    assert not partial_path(store).exists()


def test_resume_with_another_config_is_refused(store: Path) -> None:
    a, b = make_rows(2)
    writer = writer_open(store)
    writer.add(a.uid, a.fingerprint, a.pooled, a.seq)
    writer.close()
    with pytest.raises(CacheError, match=f"another extractor config \\(hash {CONFIG_HASH}, now ffff"):
        writer_open(store, attrs=make_attrs(config_hash_="ffff"))
    other_layout = StoreLayout(pooled=dict(LAYOUT.pooled), seq=dict(LAYOUT.seq), seq_dtype="float32")
    with pytest.raises(CacheError, match=r"another extractor config .* or layout"):
        writer_open(store, layout=other_layout)
    # The refusals released the lock and changed nothing: the right config resumes.
    writer = writer_open(store)
    assert writer.done_ids == {a.uid}
    writer.add(b.uid, b.fingerprint, b.pooled, b.seq)
    writer.finalize()
    assert_matches_rows(read_content(store), [a, b])


def test_partial_of_another_format_version_is_refused(store: Path) -> None:
    writer_open(store).close()
    meta_path = partial_path(store) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheError, match=f"written by cache format {FORMAT_VERSION + 1}.*Delete the partial"):
        writer_open(store)


def test_leftover_tmp_segment_is_removed_and_not_counted(store: Path) -> None:
    rows = [r for r in make_rows(7) if not r.uid.endswith("0")][:6]
    writer = writer_open(store, segment_bytes=1)
    _write(writer, rows[:3])
    writer.close()
    assert _segments(store) == ["seg-000000", "seg-000001", "seg-000002"]
    # Simulate a flush killed before its rename: a complete-looking segment under the temporary name.
    partial = partial_path(store)
    leftover = partial / "seg-000003.tmp"
    shutil.copytree(partial / "seg-000002", leftover)
    record = json.loads((leftover / "rows.json").read_text())
    record["ids"] = ["ghost"]
    record["rejected"] = {"ghost-rejected": "never acknowledged"}
    (leftover / "rows.json").write_text(json.dumps(record))

    writer = writer_open(store, segment_bytes=1)
    assert not leftover.exists()
    assert writer.done_ids == {r.uid for r in rows[:3]}
    assert "ghost" not in writer.done_ids
    _write(writer, rows)
    assert _segments(store) == [f"seg-{i:06d}" for i in range(6)]
    writer.finalize()
    content = read_content(store)
    assert "ghost" not in content.ids
    assert "ghost-rejected" not in dict(content.rejected)
    assert_matches_rows(content, rows)


@pytest.mark.parametrize("where", ["after the rename", "after listing the segment"])
def test_a_flush_cut_short_by_a_signal_handler_is_finished_by_the_next_flush(
    store: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The DataLoader's SIGCHLD handler raises in the main thread wherever it happens to be, also
    inside a flush; the flush that follows must neither collide with the renamed segment nor write
    the buffered rows twice."""
    rows = make_rows(8)
    writer = writer_open(store)
    _write(writer, rows[:4])
    writer.flush()
    _write(writer, rows[4:])

    class WorkerDeathError(RuntimeError):
        pass

    target = (writer_module.Segment, "load") if where == "after the rename" else (writer, "_buffer_reset")
    original = getattr(*target)

    def interrupted(*args: object) -> object:
        monkeypatch.setattr(*target, original)
        raise WorkerDeathError("DataLoader worker (pid 1) is killed by signal: Killed.")

    monkeypatch.setattr(*target, interrupted)
    with pytest.raises(WorkerDeathError):
        writer.flush()
    assert _segments(store) == ["seg-000000", "seg-000001"]
    writer.flush()  # what the extraction runner does before it reports the dead worker
    writer.flush()
    assert _segments(store) == ["seg-000000", "seg-000001"]
    writer.close()

    writer = writer_open(store)
    assert writer.done_ids == {r.uid for r in rows}
    writer.finalize()
    assert_matches_rows(read_content(store), [r for r in rows if not r.uid.endswith("0")])


def test_a_foreign_segment_in_the_next_slot_is_refused(store: Path) -> None:
    rows = [r for r in make_rows(5) if not r.uid.endswith("0")][:4]
    writer = writer_open(store)
    _write(writer, rows[:2])
    writer.flush()
    shutil.copytree(partial_path(store) / "seg-000000", partial_path(store) / "seg-000001")
    _write(writer, rows[2:])
    with pytest.raises(CacheError, match="seg-000001 holds rows this writer did not buffer; delete that folder"):
        writer.flush()


def test_crash_between_rename_and_cleanup_leaves_a_readable_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(4)
    writer = writer_open(store)
    _write(writer, rows)

    class Killed(BaseException):
        pass

    def killed(path: object) -> None:
        raise Killed("killed while removing the partial folder")

    # Only the writer module's view of shutil is replaced (zarr and pytest use shutil too).
    monkeypatch.setattr(writer_module, "shutil", SimpleNamespace(rmtree=killed))
    with pytest.raises(Killed):
        writer.finalize()
    monkeypatch.undo()
    assert store.exists() and partial_path(store).exists()
    assert_matches_rows(read_content(store), [r for r in rows if not r.uid.endswith("0")])
    with pytest.raises(CacheError, match="already complete"):
        writer_open(store)


# ------------------------------------------------------------------------------------------------ refusals


def test_open_when_final_store_exists_is_refused(store: Path) -> None:
    write_store(store, make_rows(2))
    before = read_content(store)
    with pytest.raises(CacheError, match=f"{store.name} is already complete; delete it"):
        writer_open(store)
    assert not partial_path(store).exists()
    assert_same_content(read_content(store), before)


@pytest.mark.parametrize("name", ["feats.npz", "feats", "feats.h5.partial"])
def test_open_with_wrong_suffix_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CacheError, match=r"must end in \.h5 \(HDF5\) or \.zarr"):
        writer_open(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_second_writer_in_the_same_process_is_refused(store: Path) -> None:
    # flock locks belong to the open file description: a new fd in the same process conflicts too.
    first = writer_open(store)
    with pytest.raises(CacheError, match=f"being written by pid {os.getpid()}; only one writer per store"):
        writer_open(store)
    row = make_rows(1)[0]
    first.add(row.uid, row.fingerprint, row.pooled, row.seq)  # the refused open did not disturb the first writer
    first.close()
    second = writer_open(store)
    assert second.done_ids == {row.uid}
    second.finalize()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_file_system_without_locks_is_a_clear_error(store: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(writer_module.fcntl, "flock", no_locks)
    with pytest.raises(
        CacheError,
        match=f"{re.escape(str(partial_path(store)))}: the file system holding it has no "
        f"file locks \\(flock: {re.escape(os.strerror(code))}\\), .*Write the store "
        "to a local disk and copy it afterwards, or extract shards \\(--shard i/N\\) "
        "to local disks and join them with `ser cache merge`",
    ):
        writer_open(store)
    monkeypatch.undo()
    writer_open(store).close()  # the refused open left nothing locked or open


def test_other_lock_errors_are_not_disguised(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, operation: int) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(writer_module.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor") as caught:
        writer_open(store)
    assert not isinstance(caught.value, CacheError)


HOLDER = textwrap.dedent("""
    import sys, time
    from tests.cache.storeutil import writer_open
    from pathlib import Path
    writer = writer_open(Path(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(60)
""")


def test_second_writer_in_another_process_is_refused_until_it_dies(store: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)], stdout=subprocess.PIPE, text=True, env=subprocess_env()
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CacheError, match=f"being written by pid {holder.pid}; only one writer per store"):
            writer_open(store)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    with writer_open(store) as writer:  # the lock died with its process
        assert writer.done_ids == set()


# ------------------------------------------------------------------------------------------------ notes


def test_row_notes_survive_resume_and_finalize(store: Path) -> None:
    rows = make_rows(5)
    notes = {rows[1].uid: "padded to the minimum length", rows[3].uid: "truncated to 30 s"}
    writer = writer_open(store)
    for row in rows[:2]:
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq, note=notes.get(row.uid))
    writer.close()
    writer = writer_open(store)
    assert writer.notes == {rows[1].uid: notes[rows[1].uid]}
    for row in rows[2:]:
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq, note=notes.get(row.uid))
    writer.finalize()
    with CacheReader(store) as reader:
        assert reader.notes == notes
    assert_matches_rows(read_content(store), rows)


def test_partial_summary_counts_acknowledged_segments_only(store: Path) -> None:
    assert partial_summary(store) is None
    rows = [r for r in make_rows(7) if not r.uid.endswith("0")][:4]
    writer = writer_open(store, segment_bytes=1)
    for row in rows[:3]:
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
    writer.reject("gone", "too short")
    writer.close()
    (partial_path(store) / "seg-000009.tmp").mkdir()  # an interrupted flush is not counted
    summary = partial_summary(store)
    assert summary is not None
    assert (summary["segments"], summary["rows"], summary["rejected"]) == (4, 3, 1)
    assert summary["partial"] == str(partial_path(store))
    assert summary["attrs"]["extractor"]["config_hash"] == CONFIG_HASH
    assert StoreLayout.from_json(summary["layout"]) == LAYOUT
