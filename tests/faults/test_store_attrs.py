"""A damaged JSON attribute of a finished store (invalid JSON, the wrong type, nesting deep enough to exhaust the
stack, a record missing a required field) is one clear line naming the store and the attribute, from the reader
and from ``ser cache info``, ``ser cache verify`` and ``ser fit`` (exit 2), never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest
import zarr
from typer.testing import CliRunner

from ser.cache.format import CacheError
from ser.cache.reader import CacheReader
from ser.cli import app
from tests.fakes.caches import make_corpus

DAMAGES = {
    "invalid JSON": ('{"a":', "is not valid JSON"),
    "a list": ("[]", "is malformed"),
    "a string": ('"x"', "is malformed"),
    "a number": ("3", "is malformed"),
    "deep nesting": ("[" * 100000 + "]" * 100000, "is nested too deeply"),
}
ATTRS = ["layout", "checksums", "extractor", "upstream", "manifest", "environment", "augmentation", "merged_from"]
MISSING = {
    "layout without its fields": ("layout", "{}", "layout lacks 'pooled'"),
    "layout with a bad shape": ("layout", '{"pooled": {"mean": [3]}}', "layout.pooled['mean'] must have 2 items"),
    "checksums entries not objects": ("checksums", '{"ids": 7}', "checksums['ids'] must be an object"),
    "checksums entry without crc32": ("checksums", '{"ids": {"block_rows": 4}}', "checksums['ids'] lacks 'crc32'"),
    "checksums without the pooled statistic": (
        "checksums",
        '{"ids": {"block_rows": 4, "crc32": [1]}}',
        "no entry for fingerprints, seq/offsets, pooled/mean",
    ),
    "manifest without sha256": ("manifest", '{"path": "m.jsonl"}', "manifest lacks 'sha256'"),
    "extractor shard of one number": ("extractor", '{"shard": [1]}', "extractor.shard must have 2 items"),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The manifest and the same sound store as HDF5 and as Zarr."""
    from ser.cache.merge import merge_stores

    folder = tmp_path_factory.mktemp("attrs")
    manifest, audio, _ = make_corpus(folder, n_speakers=3, per_speaker=4, seq=True)
    return {"manifest": manifest, ".h5": audio, ".zarr": merge_stores([audio], folder / "audio.zarr")}


def _damaged(stores: dict[str, Path], suffix: str, tmp_path: Path, attr: str, text: str) -> Path:
    store = tmp_path / f"feats{suffix}"
    if suffix == ".h5":
        shutil.copy(stores[suffix], store)
        with h5py.File(store, "r+") as handle:
            handle.attrs[attr] = text
    else:
        shutil.copytree(stores[suffix], store)
        zarr.open_group(store, mode="r+").attrs[attr] = text
    return store


def test_a_sound_store_opens_with_its_attributes_decoded(stores: dict[str, Path]) -> None:
    for suffix in (".h5", ".zarr"):
        with CacheReader(stores[suffix]) as reader:
            assert reader.layout.pooled == {"mean": (3, 8)} and reader.layout.seq == {"layer_01": 8}
            assert reader.attrs["extractor"]["config_hash"] == "a"
            assert set(reader.attrs["checksums"]) >= {"ids", "pooled/mean", "seq/layer_01"}
            assert reader.has_checksums and reader.damaged() == []


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("attr", ATTRS)
def test_a_damaged_attribute_is_one_line_naming_it(
    stores: dict[str, Path], tmp_path: Path, suffix: str, damage: str, attr: str
) -> None:
    text, what = DAMAGES[damage]
    store = _damaged(stores, suffix, tmp_path, attr, text)
    if attr == "merged_from" and damage == "a list":
        with CacheReader(store) as reader:  # an empty list of merged shards is a valid record
            assert reader.attrs["merged_from"] == []
        return
    with pytest.raises(CacheError) as caught:
        CacheReader(store)
    message = str(caught.value)
    assert message.startswith(f"{store}: the store's {attr!r} attribute {what}"), message
    assert "re-extract" in message and "\n" not in message


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("case", list(MISSING))
def test_a_record_missing_a_required_field_is_named(
    stores: dict[str, Path], tmp_path: Path, suffix: str, case: str
) -> None:
    attr, text, what = MISSING[case]
    store = _damaged(stores, suffix, tmp_path, attr, text)
    with pytest.raises(CacheError, match=rf"the store's '{attr}' attribute is malformed: ") as caught:
        CacheReader(store)
    assert what in str(caught.value)


def _commands(store: Path, manifest: Path, runs: Path) -> dict[str, list[str]]:
    fit = ["fit", "-f", "logreg", "-m", str(manifest), "-p", "speaker-loso", "--audio", f"{store}:layer=1"]
    return {
        "info": ["cache", "info", str(store)],
        "verify": ["cache", "verify", str(store), "--manifest", str(manifest)],
        "fit": [*fit, "--folds", "spk0", "-q", "-o", str(runs)],
    }


@pytest.mark.parametrize(
    ("suffix", "attr", "text"),
    [
        (".h5", "layout", DAMAGES["invalid JSON"][0]),
        (".h5", "checksums", "[]"),  # was read as "no checksums": damage went undetected
        (".h5", "checksums", "3"),
        (".h5", "extractor", '"x"'),
        (".h5", "manifest", "3"),
        (".h5", "upstream", '"x"'),
        (".h5", "environment", DAMAGES["deep nesting"][0]),
        (".zarr", "layout", "{}"),
        (".zarr", "manifest", '"x"'),
        (".zarr", "checksums", '{"ids": "x"}'),
    ],
)
def test_cache_info_verify_and_fit_exit_2_naming_the_attribute(
    stores: dict[str, Path], tmp_path: Path, suffix: str, attr: str, text: str
) -> None:
    store = _damaged(stores, suffix, tmp_path, attr, text)
    runs = tmp_path / "runs"
    for name, args in _commands(store, stores["manifest"], runs).items():
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (name, result.output, result.exception)
        assert f"the store's {attr!r} attribute" in result.output and str(store) in result.output, result.output
        assert "Traceback" not in result.output
    assert not runs.exists()
