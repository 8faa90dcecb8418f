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


def test_merging_some_of_the_shards_warns_which_are_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    rows = make_rows(6)
    shard = write_store(tmp_path / "s0.h5", rows[:3], attrs=make_attrs(shard="0/3"))
    with caplog.at_level(logging.WARNING, logger="ser.cache.merge"):
        merge_stores([shard], tmp_path / "merged.h5")
    assert "merging 1 shard(s) of 3: shard(s) 1, 2 are missing" in caplog.text
