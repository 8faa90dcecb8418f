"""A full disk during extraction and fit: one line naming the cause, nothing already written lost, no
half-written file left, and the re-run with space finishes with the features of an uninterrupted run.

On a small tmpfs where the test may mount one (root on Linux); the short write numpy reports on a
full disk is also injected, so the handling is tested everywhere.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cli import app
from tests.fakes.demo import demo_manifest


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def actor01(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    folder = tmp_path_factory.mktemp("full-disk")
    manifest = demo_manifest(folder, speakers=["Actor_01", "Actor_02"])
    reference = folder / "reference.h5"
    run_extraction(
        manifest, build_extractor("egemaps"), reference, RunOptions(seq="lld", num_workers=0, progress=False)
    )
    return {"manifest": manifest, "reference": reference, "folder": folder}


def _same(store: Path, reference: Path) -> None:
    with CacheReader(store) as got, CacheReader(reference) as want:
        assert sorted(got.ids) == sorted(want.ids)
        for stat in want.layout.pooled:
            np.testing.assert_array_equal(got.pooled(stat, ids=want.ids), want.pooled(stat, ids=want.ids))
        for uid in want.ids[:10]:
            np.testing.assert_array_equal(got.sequence(uid, "lld"), want.sequence(uid, "lld"))


def _extract(manifest: Path, store: Path) -> tuple[int, str]:
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
            "--batch-items",
            "8",
            "--flush-seconds",
            "0",
            "--no-progress",
        ],
    )
    return result.exit_code, result.output


@pytest.mark.slow
def test_a_full_tmpfs_during_extraction_is_one_line_and_resumes_identically(
    actor01: dict[str, Path], tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", "600k") as disk:
        store = disk / "f.h5"
        code, output = _extract(actor01["manifest"], store)
        assert code == 2, output
        assert "no space left on the device" in output and "Traceback" not in output
        assert len(output.strip().splitlines()) == 1
        partial = Path(f"{store}.partial")
        kept = sorted(p.name for p in partial.iterdir() if p.name.startswith("seg"))
        assert kept and not [name for name in kept if name.endswith(".tmp")]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        code, output = _extract(actor01["manifest"], store)
        assert code == 0, output
        _same(store, actor01["reference"])


@pytest.mark.slow
def test_a_short_write_is_reported_as_a_full_disk_and_resumes(
    actor01: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import ser.cache.writer as writer_module

    calls = {"n": 0}
    real_save = np.save

    def save_until_full(path: object, array: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] > 8:  # the third segment: numpy's message on a short write, without an errno
            raise OSError(f"{array.nbytes} requested and 4096 written")
        real_save(path, array)

    monkeypatch.setattr(writer_module.np, "save", save_until_full)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    store = tmp_path / "f.h5"
    code, output = _extract(actor01["manifest"], store)
    assert code == 2 and "no space left on the device" in output and "16 rows flushed before are kept" in output
    monkeypatch.setattr(writer_module.np, "save", real_save)
    code, output = _extract(actor01["manifest"], store)
    assert code == 0, output
    _same(store, actor01["reference"])


def test_a_full_disk_during_fit_leaves_no_half_written_file(actor01: dict[str, Path], tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "256k") as disk:
        result = CliRunner().invoke(
            app,
            [
                "fit",
                "-f",
                "fleser",
                "-m",
                str(actor01["manifest"]),
                "-p",
                "speaker-loso",
                "--set",
                "val_by=utterance",
                "--audio",
                str(actor01["reference"]),
                "--set",
                "train.epochs=1",
                "-o",
                str(disk),
            ],
        )
        assert result.exit_code == 2, result.output
        assert "no space left on the device" in result.output and "incomplete" in result.output
        assert "Traceback" not in result.output
        assert not list(disk.rglob("*.tmp")) and not list(disk.rglob("metrics.json"))
