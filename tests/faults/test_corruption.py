"""Damage to a finished store is found by ``ser cache verify`` and refused by ``ser fit``, never trained on:
a changed finite value in every kind of HDF5 dataset, a deleted or cut Zarr chunk."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.fakes.caches import make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    manifest, audio, _ = make_corpus(tmp_path, n_speakers=3, per_speaker=8, seq=True)
    return manifest, audio


def _verify(store: Path, manifest: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["cache", "verify", str(store), "--manifest", str(manifest)])
    return result.exit_code, result.output


def _fit(store: Path, manifest: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "-f",
            "mlp",
            "-m",
            str(manifest),
            "-p",
            "speaker-loso",
            "--audio",
            f"{store}:layer=1",
            "--set",
            "val_by=utterance",
            "--set",
            "train.epochs=1",
            "-o",
            str(out),
        ],
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("dataset", ["pooled/mean", "seq/layer_01", "seq/offsets", "ids", "fingerprints"])
def test_a_changed_finite_value_in_hdf5_is_found(corpus: tuple[Path, Path], tmp_path: Path, dataset: str) -> None:
    manifest, store = corpus
    assert _verify(store, manifest)[0] == 0
    with h5py.File(store, "r+") as handle:
        data = handle[dataset]
        index = (min(3, data.shape[0] - 1),) + (0,) * (data.ndim - 1)
        value = data[index]
        data[index] = value + 1 if dataset != "pooled/mean" else value * 1.001 + 0.01  # finite, plausible
    code, output = _verify(store, manifest)
    assert code != 0 and f"{dataset}: rows" in output and "differ from the checksums" in output
    if dataset in ("pooled/mean", "ids", "fingerprints"):
        code, output = _fit(store, manifest, tmp_path / "runs")
        assert code == 2 and "is damaged" in output, output
        assert not (tmp_path / "runs").exists()


def _zarr_copy(tmp_path: Path, manifest: Path, store: Path) -> Path:
    from ser.cache.merge import merge_stores

    return merge_stores([store], tmp_path / "feats.zarr")


@pytest.mark.parametrize("damage", ["deleted", "cut"])
def test_a_deleted_or_cut_zarr_chunk_is_found_not_read_as_zeros(
    corpus: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    manifest, store = corpus
    zarr_store = _zarr_copy(tmp_path, manifest, store)
    assert _verify(zarr_store, manifest)[0] == 0
    chunk = next(p for p in sorted((zarr_store / "pooled" / "mean" / "c").rglob("*")) if p.is_file())
    if damage == "deleted":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:-8])
    code, output = _verify(zarr_store, manifest)
    assert code != 0 and ("damaged" in output or "differ from the checksums" in output), output
    code, output = _fit(zarr_store, manifest, tmp_path / "runs")
    assert code == 2 and ("is damaged" in output or "chunk file" in output), output
    assert not (tmp_path / "runs").exists()


def test_a_compressed_zarr_store_with_a_deleted_chunk_is_found_by_its_checksums(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    from ser.cache.merge import merge_stores

    manifest, store = corpus
    packed = merge_stores([store], tmp_path / "packed.zarr", compression="zstd")
    chunk = next(p for p in sorted((packed / "pooled" / "mean" / "c").rglob("*")) if p.is_file())
    chunk.unlink()  # zarr's own reader returns the fill value (zeros) for it
    code, output = _verify(packed, manifest)
    assert code != 0 and "pooled/mean: rows" in output and "differ from the checksums" in output
    code, output = _fit(packed, manifest, tmp_path / "runs")
    assert code == 2 and "is damaged" in output


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_extract_repair_re_extracts_the_damaged_rows_only(tmp_path: Path, suffix: str) -> None:
    import numpy as np

    from ser.cache.reader import CacheReader
    from tests.fakes.demo import demo_manifest

    manifest = demo_manifest(tmp_path, speakers=["Actor_01"])
    store, reference = tmp_path / f"f{suffix}", tmp_path / f"reference{suffix}"
    for path in (store, reference):
        result = CliRunner().invoke(
            app,
            [
                "extract",
                "--model",
                "egemaps",
                "-m",
                str(manifest),
                "-o",
                str(path),
                "--seq",
                "lld",
                "--num-workers",
                "0",
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
    if suffix == ".h5":
        with h5py.File(store, "r+") as handle:
            handle["pooled/functionals"][5, 0, 3] += 1.0
    else:
        chunk = next(p for p in sorted((store / "pooled" / "functionals" / "c").rglob("*")) if p.is_file())
        chunk.unlink()
    assert _verify(store, manifest)[0] != 0
    result = CliRunner().invoke(
        app,
        [
            "extract",
            "--model",
            "egemaps",
            "-m",
            str(manifest),
            "-o",
            str(store),
            "--seq",
            "lld",
            "--num-workers",
            "0",
            "--no-progress",
            "--repair",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "damaged row" in result.output
    assert _verify(store, manifest)[0] == 0
    with CacheReader(store) as got, CacheReader(reference) as want:
        assert sorted(got.ids) == sorted(want.ids)
        np.testing.assert_array_equal(got.pooled("functionals", ids=want.ids), want.pooled("functionals", ids=want.ids))
        for uid in want.ids:
            np.testing.assert_array_equal(got.sequence(uid, "lld"), want.sequence(uid, "lld"))
    again = CliRunner().invoke(
        app,
        [
            "extract",
            "--model",
            "egemaps",
            "-m",
            str(manifest),
            "-o",
            str(store),
            "--num-workers",
            "0",
            "--no-progress",
            "--repair",
            "--seq",
            "lld",
        ],
    )
    assert again.exit_code == 0 and "already complete" in again.output
