"""Clear lines for damaged or incomplete store files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ser.cache.format import CacheError
from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader
from tests.cache.storeutil import make_attrs, make_rows, write_store


def test_a_truncated_hdf5_store_is_called_cut_short_not_a_locking_problem(tmp_path: Path) -> None:
    store = write_store(tmp_path / "f.h5", make_rows(6), attrs=make_attrs())
    store.write_bytes(store.read_bytes()[:2000])
    with pytest.raises(CacheError, match="cut short") as caught:
        CacheReader(store)
    assert "HDF5_USE_FILE_LOCKING" not in str(caught.value)


def test_merging_some_of_the_shards_warns_which_are_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = make_rows(6)
    shard = write_store(tmp_path / "s0.h5", rows[:3], attrs=make_attrs(shard="0/3"))
    with caplog.at_level(logging.WARNING, logger="ser.cache.merge"):
        merge_stores([shard], tmp_path / "merged.h5")
    assert "merging 1 shard(s) of 3: shard(s) 1, 2 are missing" in caplog.text


def test_a_store_whose_extension_stopped_says_where_its_rows_are(tmp_path: Path) -> None:
    store = write_store(tmp_path / "f.h5", make_rows(4), attrs=make_attrs())
    store.rename(tmp_path / "f.extending.h5")  # what an interrupted extension leaves
    with pytest.raises(
        CacheError,
        match=r"f.h5 is being extended, or its extension was interrupted: its finished "
        r"rows wait in f.extending.h5",
    ):
        CacheReader(store)


def test_two_extensions_at_once_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from ser.extract.base import ExtractorError
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.schema import read_manifest, write_manifest
    from tests.fakes.demo import demo_manifest

    manifest = demo_manifest(tmp_path, speakers=["Actor_01"])
    rows = read_manifest(manifest)
    write_manifest(manifest, rows.header, rows.utterances[:4])
    store = tmp_path / "f.h5"
    run_extraction(manifest, build_extractor("egemaps"), store, RunOptions(num_workers=0, progress=False))
    write_manifest(manifest, rows.header, rows.utterances[:6])  # two new rows: the store is extended
    real_replace = os.replace

    def raced(source: object, target: object) -> None:
        if str(target).endswith(".extending.h5"):
            real_replace(source, tmp_path / "elsewhere.h5")  # the other run moved it first
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", raced)
    with pytest.raises(ExtractorError, match="another `ser extract` started extending"):
        run_extraction(manifest, build_extractor("egemaps"), store, RunOptions(num_workers=0, progress=False))


def test_cache_info_of_a_stopped_extension_counts_the_rows_set_aside(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ser.cli import app
    from tests.cache.storeutil import writer_open

    store = write_store(tmp_path / "f.h5", make_rows(5), attrs=make_attrs())
    store.rename(tmp_path / "f.extending.h5")
    writer_open(store, attrs=make_attrs()).close()  # the extension's partial folder
    result = CliRunner().invoke(app, ["cache", "info", str(store)])
    assert result.exit_code == 0, result.output
    assert "partial (0 rows" in result.output and "the finished store's 5 rows wait in" in result.output
