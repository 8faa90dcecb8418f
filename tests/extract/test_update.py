"""A finished store meets a changed manifest: new rows are extracted, changed rows redone, rejects retried.

Every extended store is compared, value for value, with one uninterrupted extraction of the final
manifest, and checked with ``verify_store`` against that manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser.cache.format import partial_path, set_aside_path
from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader
from ser.cache.verify import verify_store
from ser.cache.writer import partial_summary
from ser.extract.base import ExtractorError
from ser.extract.runner import RunOptions, run_extraction
from ser.extract.update import find_pending
from ser.manifests.fingerprints import SCHEME, row_fingerprints
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest
from tests.extract.test_runner import Hooked, _interrupt, _logmel, assert_same_stored, read_stored
from tests.fakes import write_tone


def _options(**kwargs: Any) -> RunOptions:
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("progress", False)
    return RunOptions(**kwargs)


def _tones(root: Path, n: int) -> None:
    for i in range(n):
        write_tone(root / f"t{i}.wav", seconds=0.2 + 0.05 * i, frequency=210.0 + 45 * i)


def _manifest(root: Path, name: str, rows: list[Utterance]) -> Path:
    path = root / name
    write_manifest(path, ManifestHeader(corpus="tones", root=str(root)), rows)
    return path


def _rows(ids: range, *, missing: tuple[int, ...] = ()) -> list[Utterance]:
    return [Utterance(id=f"t{i}", audio=f"t{i}.wav" if i not in missing else f"lost{i}.wav") for i in ids]


def _expected(manifest: Path) -> dict[str, str]:
    rows = read_manifest(manifest)  # the stores here are audio stores written with the current scheme
    return row_fingerprints(rows, rows.utterances, modality="audio", scheme=SCHEME)


def _ids_extracted(hooked: Hooked) -> list[str]:
    return sorted(uid for call in hooked.calls for uid in call)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    _tones(folder, 10)
    return folder


def test_grown_manifest_extends_the_store_with_the_new_rows_only(root: Path, tmp_path: Path) -> None:
    small = _manifest(root, "four.jsonl", _rows(range(4)))
    grown = _manifest(root, "eight.jsonl", _rows(range(8)))
    out = tmp_path / "feats.h5"
    run_extraction(small, _logmel(), out, _options(seq="logmel"))
    assert not verify_store(out, _expected(grown)).ok  # what a "nothing to do" answer left behind

    hooked = Hooked(_logmel())
    report = run_extraction(grown, hooked, out, _options(seq="logmel"))
    assert not report.already_complete and report.extended == "4 new rows"
    assert _ids_extracted(hooked) == ["t4", "t5", "t6", "t7"]
    assert report.extracted == 4 and report.resumed == 4
    assert verify_store(out, _expected(grown)).ok
    assert not set_aside_path(out).exists() and not partial_path(out).exists()
    reference = run_extraction(grown, _logmel(), tmp_path / "reference.h5", _options(seq="logmel")).output
    got, want = read_stored(out), read_stored(reference)
    assert_same_stored(got, want)
    with CacheReader(out) as reader:
        assert reader.attrs["extended_from"]["n_items"] == 4
        assert reader.attrs["manifest"]["n_items"] == 8

    again = Hooked(_logmel())
    report = run_extraction(grown, again, out, _options(seq="logmel"))
    assert report.already_complete and report.stored == 8 and again.calls == []


def test_changed_rows_are_extracted_again(root: Path, tmp_path: Path) -> None:
    before = _manifest(root, "before.jsonl", _rows(range(5)))
    out = tmp_path / "feats.h5"
    run_extraction(before, _logmel(), out, _options())
    rows = _rows(range(5))
    rows[2] = Utterance(id="t2", audio="t9.wav")  # the row now points at another recording
    rows[3] = Utterance(id="t3", audio="t3.wav", start=0.05, end=0.2)  # a segment of it
    after = _manifest(root, "after.jsonl", rows)
    pending = find_pending(out, _expected(after))
    assert sorted(pending.changed) == ["t2", "t3"] and pending.stored == 3 and not pending.missing

    hooked = Hooked(_logmel())
    report = run_extraction(after, hooked, out, _options())
    assert report.extended == "2 changed rows" and _ids_extracted(hooked) == ["t2", "t3"]
    assert verify_store(out, _expected(after)).ok
    reference = run_extraction(after, _logmel(), tmp_path / "reference.h5", _options()).output
    assert_same_stored(read_stored(out), read_stored(reference))
    with CacheReader(out) as new, CacheReader(tmp_path / "reference.h5") as ref:
        np.testing.assert_array_equal(new.pooled("mean", ids=["t2"]), ref.pooled("mean", ids=["t2"]))


def test_rows_outside_a_smaller_manifest_are_kept(root: Path, tmp_path: Path) -> None:
    """A store may serve a bigger manifest (all emotions) than this one (four classes): nothing is dropped."""
    full = _manifest(root, "full.jsonl", _rows(range(6)))
    subset = _manifest(root, "subset.jsonl", _rows(range(0, 6, 2)))
    out = tmp_path / "feats.h5"
    run_extraction(full, _logmel(), out, _options())
    before = read_stored(out)
    hooked = Hooked(_logmel())
    report = run_extraction(subset, hooked, out, _options())
    assert report.already_complete and report.stored == 3 and hooked.calls == []
    assert_same_stored(read_stored(out), before)
    # and when the subset also brings a new row, the extension keeps the rows outside it
    grown = _manifest(root, "grown.jsonl", [*_rows(range(0, 6, 2)), *_rows(range(6, 7))])
    run_extraction(grown, _logmel(), out, _options())
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == [f"t{i}" for i in range(7)]


def test_an_extension_killed_while_seeding_resumes(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ser.cache.writer as writer_module

    small = _manifest(root, "small.jsonl", _rows(range(6)))
    grown = _manifest(root, "grown.jsonl", _rows(range(9)))
    out = tmp_path / "feats.h5"
    run_extraction(small, _logmel(), out, _options(seq="logmel"))
    real_add = writer_module.CacheWriter.add
    calls = {"n": 0}

    def dying_add(self: Any, *args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed in the middle of copying the old rows
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(writer_module.CacheWriter, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        run_extraction(grown, _logmel(), out, _options(seq="logmel", segment_bytes=1))
    monkeypatch.setattr(writer_module.CacheWriter, "add", real_add)
    assert not out.exists() and set_aside_path(out).exists()  # the old store waits, whole
    summary = partial_summary(out)
    assert summary is not None and summary["rows"] == 3

    hooked = Hooked(_logmel())
    report = run_extraction(grown, hooked, out, _options(seq="logmel"))
    assert report.extended is not None and _ids_extracted(hooked) == ["t6", "t7", "t8"]  # old rows copied, not redone
    assert not set_aside_path(out).exists()
    reference = run_extraction(grown, _logmel(), tmp_path / "reference.h5", _options(seq="logmel")).output
    assert_same_stored(read_stored(out), read_stored(reference))


def test_an_extension_interrupted_while_extracting_resumes(root: Path, tmp_path: Path) -> None:
    small = _manifest(root, "small.jsonl", _rows(range(3)))
    grown = _manifest(root, "grown.jsonl", _rows(range(10)))
    out = tmp_path / "feats.h5"
    run_extraction(small, _logmel(), out, _options())
    with pytest.raises(KeyboardInterrupt):
        run_extraction(
            grown, Hooked(_logmel(), stop_after=1, stop=_interrupt), out, _options(batch_items=2, segment_bytes=1)
        )
    assert not out.exists() and not set_aside_path(out).exists()  # the kept rows are in the partial store
    summary = partial_summary(out)
    assert summary is not None and summary["rows"] == 5  # 3 kept + the first batch of 2
    run_extraction(grown, _logmel(), out, _options(batch_items=2))
    reference = run_extraction(grown, _logmel(), tmp_path / "reference.h5", _options()).output
    assert_same_stored(read_stored(out), read_stored(reference))


def test_rejected_rows_stay_rejected_until_retried(root: Path, tmp_path: Path) -> None:
    manifest = _manifest(root, "m.jsonl", _rows(range(4), missing=(1,)))
    out = tmp_path / "feats.h5"
    first = run_extraction(manifest, _logmel(), out, _options())
    assert list(first.rejected) == ["t1"] and "missing audio file" in first.rejected["t1"]

    hooked = Hooked(_logmel())
    again = run_extraction(manifest, hooked, out, _options())
    assert again.already_complete and hooked.calls == []
    assert list(again.rejected) == ["t1"] and again.stored == 3  # still reported, so the CLI exits 3

    write_tone(root / "lost1.wav", seconds=0.3, frequency=555.0)  # the share is back
    hooked = Hooked(_logmel())
    retried = run_extraction(manifest, hooked, out, _options(retry_rejected=True))
    assert retried.extended == "1 rejected row to retry" and _ids_extracted(hooked) == ["t1"]
    assert retried.rejected == {}
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == ["t0", "t1", "t2", "t3"] and reader.rejected == {}
    assert verify_store(out, _expected(manifest)).ok
    lines = out.with_name(out.name + ".rejects.tsv").read_text(encoding="utf-8").splitlines()
    assert lines == ["id\tstatus\treason"]


def test_retry_rejected_over_a_partial_store_retries_the_earlier_rejects(root: Path, tmp_path: Path) -> None:
    rows = _rows(range(6), missing=(5,))
    rows[5].duration = 9.0  # as the manifest said: the longest row comes first
    manifest = _manifest(root, "m.jsonl", rows)
    out = tmp_path / "feats.h5"
    with pytest.raises(KeyboardInterrupt):  # t5 (missing) is rejected in the first batch, then a crash
        run_extraction(
            manifest, Hooked(_logmel(), stop_after=1, stop=_interrupt), out, _options(batch_items=2, segment_bytes=1)
        )
    summary = partial_summary(out)
    assert summary is not None and summary["rejected"] == 1
    write_tone(root / "lost5.wav", seconds=0.2, frequency=640.0)
    hooked = Hooked(_logmel())
    report = run_extraction(manifest, hooked, out, _options(batch_items=2, retry_rejected=True))
    assert "t5" in _ids_extracted(hooked) and report.rejected == {}
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == [f"t{i}" for i in range(6)] and reader.rejected == {}
    # two passes (finish the partial store, then extend it by t5), one report: the work of both,
    # the rows resumed by the first, the extension of the second
    assert report.extracted == 6 - summary["rows"] and report.resumed == summary["rows"] + 1
    assert report.extended == "1 rejected row to retry" and not report.already_complete


def test_a_merged_store_is_not_extended_shard_by_shard(root: Path, tmp_path: Path) -> None:
    small = _manifest(root, "small.jsonl", _rows(range(4)))
    out = tmp_path / "x.h5"
    shards = [run_extraction(small, _logmel(), out, _options(shard=(i, 2))).output for i in range(2)]
    merge_stores(shards, out)
    for shard in shards:
        shard.unlink()
    assert run_extraction(small, _logmel(), out, _options(shard=(1, 2))).already_complete
    grown = _manifest(root, "grown.jsonl", _rows(range(6)))
    with pytest.raises(ExtractorError, match=r"merged from shards\) lacks 1 new row of shard 1.*without --shard"):
        run_extraction(grown, _logmel(), out, _options(shard=(1, 2)))
    report = run_extraction(grown, _logmel(), out, _options())  # one process extends it
    assert report.extended == "2 new rows" and verify_store(out, _expected(grown)).ok
