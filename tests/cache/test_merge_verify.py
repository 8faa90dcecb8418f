"""merge_stores (shards -> one store) and verify_store (deep checks, tampered stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser.cache.format import CacheError, StoreLayout
from ser.cache.merge import _shard_of, merge_stores
from ser.cache.reader import CacheReader
from ser.cache.verify import verify_store
from ser.cache.writer import CacheWriter
from tests.cache.storeutil import (
    BACKENDS,
    LAYOUT,
    MANIFEST_SHA,
    Row,
    assert_matches_rows,
    assert_same_content,
    make_attrs,
    make_rows,
    read_content,
    set_attr,
    tamper,
    write_store,
)


@pytest.fixture(params=BACKENDS)
def suffix(request: pytest.FixtureRequest) -> str:
    return request.param


SHARD_REJECTED = [{"r-0a": "too short"}, {}, {"r-2a": "decode failed", "r-2b": "silent"}]


def _write_shards(tmp_path: Path, suffix: str, rows: list[Row]) -> list[Path]:
    """Three shard stores of the same extraction: rows split 5 / 4 / 6, each with its own rejected ids."""
    parts = [rows[:5], rows[5:9], rows[9:]]
    return [
        write_store(tmp_path / f"shard{i}{suffix}", part, attrs=make_attrs(shard=f"{i}/3"), rejected=SHARD_REJECTED[i])
        for i, part in enumerate(parts)
    ]


# ------------------------------------------------------------------------------------------------ merge


@pytest.mark.parametrize("out_suffix", BACKENDS)
def test_merge_of_three_shards_equals_one_store(tmp_path: Path, suffix: str, out_suffix: str) -> None:
    rows = make_rows(15)
    shards = _write_shards(tmp_path, suffix, rows)
    merged = merge_stores(shards, tmp_path / f"merged{out_suffix}")
    assert merged == tmp_path / f"merged{out_suffix}"
    content = read_content(merged)
    assert_matches_rows(content, rows)
    assert content.ids == [r.uid for r in rows]  # union, in shard order
    assert content.rejected == [("r-0a", "too short"), ("r-2a", "decode failed"), ("r-2b", "silent")]
    np.testing.assert_array_equal(content.offsets[1:] - content.offsets[:-1], [r.length for r in rows])
    assert content.attrs["extractor"] == make_attrs()["extractor"]  # the shard entry is dropped
    assert [m["n_items"] for m in content.attrs["merged_from"]] == [5, 4, 6]
    assert [m["shard"] for m in content.attrs["merged_from"]] == ["0/3", "1/3", "2/3"]
    assert [m["path"] for m in content.attrs["merged_from"]] == [p.name for p in shards]
    assert int(content.attrs["n_items"]) == 15 and int(content.attrs["n_rejected"]) == 3
    assert verify_store(merged, {r.uid: r.fingerprint for r in rows}).ok


def test_merge_equals_the_single_store_of_the_same_rows(tmp_path: Path, suffix: str) -> None:
    """Same ids, fingerprints, arrays, offsets and rejected list as one extraction of all rows."""
    rows = make_rows(15)
    shards = _write_shards(tmp_path, suffix, rows)
    single = tmp_path / f"single{suffix}"
    rejected = {k: v for part in SHARD_REJECTED for k, v in part.items()}
    write_store(single, rows, rejected=rejected, segment_bytes=1)
    merged = merge_stores(shards, tmp_path / f"merged{suffix}")
    got, want = read_content(merged), read_content(single)
    assert_same_content(got, want, compare_attrs=False)
    assert got.rejected == list(rejected.items())


def test_id_rejected_in_one_shard_but_stored_in_another_counts_as_stored(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(6)
    a = write_store(
        tmp_path / f"a{suffix}",
        rows[:3],
        rejected={rows[4].uid: "OOM", "lost": "too long"},
        attrs=make_attrs(shard="0/2"),
    )
    b = write_store(
        tmp_path / f"b{suffix}",
        rows[3:],
        rejected={rows[1].uid: "timeout", "lost": "too long"},
        attrs=make_attrs(shard="1/2"),
    )
    merged = read_content(merge_stores([a, b], tmp_path / f"m{suffix}"))
    assert merged.ids == [r.uid for r in rows]
    assert merged.rejected == [("lost", "too long")]
    assert_matches_rows(merged, rows)


@pytest.mark.parametrize("change", ["config", "layout", "manifest"])
def test_merge_refuses_shards_of_another_extraction(tmp_path: Path, suffix: str, change: str) -> None:
    rows = make_rows(6)
    good = write_store(tmp_path / f"a{suffix}", rows[:3], attrs=make_attrs(shard="0/2"))
    layout = LAYOUT
    attrs = make_attrs(shard="1/2")
    if change == "config":
        attrs = make_attrs(config_hash_="deadbeef", shard="1/2")
    elif change == "manifest":
        attrs = make_attrs(manifest_sha="f" * 64, shard="1/2")
    else:
        layout = StoreLayout(pooled=dict(LAYOUT.pooled), seq={"layer_01": 6})
        rows = make_rows(6, layout)
    other = write_store(tmp_path / f"b{suffix}", rows[3:], attrs=attrs, layout=layout)
    out = tmp_path / f"m{suffix}"
    message = {
        "config": "was extracted with another config or layout than",
        "layout": "was extracted with another config or layout than",
        "manifest": "was extracted from another manifest than",
    }[change]
    with pytest.raises(CacheError, match=f"b{suffix} {message} .*a{suffix}"):
        merge_stores([good, other], out)
    assert not out.exists()


def test_merge_refuses_overlapping_ids(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(6)
    a = write_store(tmp_path / f"a{suffix}", rows[:4])
    b = write_store(tmp_path / f"b{suffix}", rows[3:])
    out = tmp_path / f"m{suffix}"
    with pytest.raises(
        CacheError, match=f"id '{rows[3].uid}' is in both .*a{suffix} and .*b{suffix}; shards must be disjoint"
    ):
        merge_stores([a, b], out)
    assert not out.exists()
    assert not out.with_name(out.name + ".assembling").exists()


def test_merge_refuses_no_shards_and_an_existing_output(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(CacheError, match="at least one shard"):
        merge_stores([], tmp_path / f"m{suffix}")
    a = write_store(tmp_path / f"a{suffix}", make_rows(2))
    with pytest.raises(CacheError, match="already exists"):
        merge_stores([a], a)
    assert len(CacheReader(a)) == 2


# ------------------------------------------------------------------------------------------------ verify


@pytest.fixture
def rows() -> list[Row]:
    rows = make_rows(10)
    assert [r.length for r in rows][:6] == [3, 0, 5, 1, 0, 6]
    return rows


@pytest.fixture
def store(tmp_path: Path, suffix: str, rows: list[Row]) -> Path:
    return write_store(tmp_path / f"feats{suffix}", rows, rejected={"rej": "too short"})


@pytest.fixture
def expected(rows: list[Row]) -> dict[str, str]:
    return {**{r.uid: r.fingerprint for r in rows}, "rej": "fp-rej"}


def test_verify_good_store(store: Path, rows: list[Row], expected: dict[str, str]) -> None:
    report = verify_store(store, expected)
    assert report.ok, report.problems
    assert report.problems == []
    assert report.n_items == len(rows) and report.n_rejected == 1
    assert report.checked == [
        "offsets monotone",
        "all values finite",
        "checksums of every dataset",
        "manifest coverage and fingerprints",
    ]
    assert verify_store(store).checked == ["offsets monotone", "all values finite", "checksums of every dataset"]


def test_verify_reports_missing_changed_and_extra_ids(store: Path, rows: list[Row], expected: dict[str, str]) -> None:
    manifest = dict(expected)
    manifest["new-1"] = "x"
    manifest["new-2"] = "y"
    manifest[rows[3].uid] = "edited"
    del manifest[rows[8].uid]
    del manifest[rows[9].uid]
    report = verify_store(store, manifest)
    assert not report.ok
    assert report.problems == [
        "2 manifest ids are neither stored nor rejected, e.g. ['new-1', 'new-2']",
        f"{store}: 1 manifest rows changed since this store was extracted (audio path, segment, the audio file's "
        "content or, for text stores, the text differ): "
        f"{rows[3].uid}. Their features were computed from the old rows: re-run `ser extract` with this manifest "
        "and the same options, which extracts the changed rows again into the store (or extract into a new store)",
        f"2 stored ids are not in the manifest, e.g. ['{rows[8].uid}', '{rows[9].uid}']",
    ]


def test_verify_compares_the_manifest_hash_then_every_row(
    store: Path, rows: list[Row], expected: dict[str, str]
) -> None:
    same = verify_store(store, expected, manifest_sha256=MANIFEST_SHA)
    assert same.ok and same.notes == []
    assert "manifest sha256 as at extraction" in same.checked
    # Another manifest file (labels edited, say) whose rows still fit: a note, not a problem.
    edited = verify_store(store, expected, manifest_sha256="a" * 64, manifest_name="m2.jsonl")
    assert edited.ok, edited.problems
    assert "manifest sha256 as at extraction" not in edited.checked
    assert edited.notes == [
        f"m2.jsonl (sha256 {'a' * 12}) is not the manifest this store was extracted from (sha256 "
        f"{'0' * 12}, m.csv); it was edited or rebuilt since. Labels and splits may change freely, "
        "so every row's fingerprint (audio path, segment, text) is checked instead"
    ]
    # ... and one whose transcripts changed for two rows: refused, naming them.
    changed = verify_store(
        store, {**expected, rows[1].uid: "new text", rows[7].uid: "new audio"}, manifest_sha256="a" * 64
    )
    assert len(changed.notes) == 1
    assert changed.problems == [
        f"{store}: 2 manifest rows changed since this store was extracted (audio path, "
        f"segment, the audio file's content or, for text stores, the text differ): "
        f"{rows[1].uid}, {rows[7].uid}. Their features were computed "
        "from the old rows: re-run `ser extract` with this manifest and the same options, "
        "which extracts the changed rows again into the store (or extract into a new store)"
    ]


def test_verify_finds_nan_in_pooled(store: Path, rows: list[Row], expected: dict[str, str]) -> None:
    tamper(store, "pooled/std", (6, 2, 4), np.nan)
    report = verify_store(store, expected)
    assert report.problems[0] == f"pooled/std: NaN/Inf in utterance '{rows[6].uid}'"
    assert report.problems[1:] == ["pooled/std: rows 0-9 differ from the checksums written with the store"]


@pytest.mark.parametrize("frame", ["first", "last"])
@pytest.mark.parametrize("target", [5, 2, 0])
def test_verify_finds_nan_in_sequences_and_names_the_row(store: Path, rows: list[Row], target: int, frame: str) -> None:
    # Rows 1 and 4 have T=0, so frame offsets repeat: the culprit must still be the row owning the frame.
    with CacheReader(store) as reader:
        start, stop = int(reader.offsets[target]), int(reader.offsets[target + 1])
    assert stop - start == rows[target].length > 0
    tamper(store, "seq/layer_03", (start if frame == "first" else stop - 1, 1), np.inf)
    report = verify_store(store)
    assert report.problems[0] == f"seq/layer_03: NaN/Inf in utterance '{rows[target].uid}'"
    assert [p.split(":")[0] for p in report.problems[1:]] == ["seq/layer_03"]  # and its checksum


def test_verify_finds_non_monotone_offsets(store: Path) -> None:
    with CacheReader(store) as reader:
        offsets = reader.offsets.copy()
    assert offsets[3] > offsets[2]
    tamper(store, "seq/offsets", 3, offsets[2] - 1)  # now offsets[3] < offsets[2]
    report = verify_store(store)
    assert report.problems == [
        "seq/offsets is not a monotone (N+1,) array starting at 0",
        "seq/offsets: rows 0-10 differ from the checksums written with the store",
    ]


def test_verify_finds_offsets_not_starting_at_zero_or_not_matching_the_frames(store: Path) -> None:
    with CacheReader(store) as reader:
        offsets = reader.offsets.copy()
    tamper(store, "seq/offsets", 0, 1)
    assert "seq/offsets is not a monotone (N+1,) array starting at 0" in verify_store(store).problems
    tamper(store, "seq/offsets", 0, 0)
    tamper(store, "seq/offsets", len(offsets) - 1, offsets[-1] + 2)
    assert verify_store(store).problems == [
        f"seq/layer_01 has {offsets[-1]} frames, offsets end at {offsets[-1] + 2}",
        f"seq/layer_03 has {offsets[-1]} frames, offsets end at {offsets[-1] + 2}",
        "seq/offsets: rows 0-10 differ from the checksums written with the store",
    ]


def test_verify_refuses_what_the_reader_refuses(store: Path) -> None:
    set_attr(store, "status", "partial")
    with pytest.raises(CacheError, match="only complete stores can be read"):
        verify_store(store)


def test_merge_keeps_row_notes(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(4)
    shards = []
    for i, part in enumerate([rows[:2], rows[2:]]):
        writer = CacheWriter.open(tmp_path / f"s{i}{suffix}", layout=LAYOUT, attrs=make_attrs(shard=f"{i}/2"))
        for row in part:
            writer.add(row.uid, row.fingerprint, row.pooled, row.seq, note=f"note of {row.uid}")
        shards.append(writer.finalize())
    with CacheReader(merge_stores(shards, tmp_path / f"m{suffix}")) as reader:
        assert reader.notes == {r.uid: f"note of {r.uid}" for r in rows}


@pytest.mark.parametrize(
    ("record", "want"),
    [([1, 3], (1, 3)), ((1, 3), (1, 3)), ("1/3", (1, 3)), ("1-3", None), (None, None), (3, None), (["a", 3], None)],
)
def test_shard_records_old_and_new(record: object, want: tuple[int, int] | None) -> None:
    assert _shard_of(record) == want
