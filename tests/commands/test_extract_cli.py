"""``ser extract`` and ``ser extractors`` through typer's CliRunner; real-data runs on two RAVDESS actors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cli import app
from ser.extract.registry import FAMILIES, PRESETS
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest
from tests.fakes import write_tone

runner = CliRunner()


def _manifest(root: Path, *, bad: bool = False) -> Path:
    """Three short tones (and, with ``bad``, a row whose file is missing)."""
    rows = []
    for i, seconds in enumerate([0.2, 0.35, 0.5]):
        write_tone(root / f"t{i}.wav", seconds=seconds, frequency=300.0 + 100 * i)
        rows.append(Utterance(id=f"t{i}", audio=f"t{i}.wav"))
    if bad:
        rows.append(Utterance(id="gone", audio="gone.wav"))
    path = root / ("bad.jsonl" if bad else "m.jsonl")
    write_manifest(path, ManifestHeader(corpus="tones", root=str(root)), rows)
    return path


def _extract(manifest: Path, out: Path, *extra: str) -> object:
    return runner.invoke(app, ["extract", "--model", "logmel", "-m", str(manifest), "-o", str(out), "--no-progress",
                               "--num-workers", "0", *extra])


def test_extract_writes_the_store_and_a_summary(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "out.h5"
    result = _extract(manifest, out)
    assert result.exit_code == 0, result.output
    assert f"{out}: 3 extracted (0 were already done), 0 rejected" in result.output
    assert "audio-s/s" in result.output
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == ["t0", "t1", "t2"] and reader.rejected == {}
        assert reader.layout.pooled == {"mean": (1, 64), "std": (1, 64)} and reader.layout.seq == {}
    result = _extract(manifest, out)
    assert result.exit_code == 0, result.output
    assert "already complete (same extractor config); nothing to do" in result.output
    result = _extract(manifest, out, "--preset", "librosa")
    assert result.exit_code == 2 and "another extractor config" in result.output


def test_rejected_rows_finish_the_store_with_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    result = _extract(_manifest(tmp_path, bad=True), out, "--seq", "logmel")
    assert result.exit_code == 3, result.output
    assert "3 extracted (0 were already done), 1 rejected" in result.output
    assert f"1 rows rejected; reasons in {out}.rejects.tsv" in result.output
    lines = Path(f"{out}.rejects.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tstatus\treason" and lines[1].startswith("gone\trejected\tmissing audio file")
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == ["t0", "t1", "t2"] and list(reader.rejected) == ["gone"]
        assert reader.sequence("t2", "logmel").shape == (1 + 8000 // 160, 64)


def test_shard_and_family_options_reach_the_run(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "x.h5"
    result = _extract(manifest, out, "--shard", "1/2", "-O", "n_mels=32")
    assert result.exit_code == 0, result.output
    assert "x.shard1of2.h5: 1 extracted" in result.output and not out.exists()
    with CacheReader(tmp_path / "x.shard1of2.h5") as reader:
        assert reader.ids == ["t1"]  # rows 1, 3, 5 ... of the manifest
        assert reader.layout.pooled["mean"] == (1, 32)
        assert reader.attrs["extractor"]["config"]["n_mels"] == 32


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nope"], "unknown extractor 'nope'"),
    (["--model", "logmel", "--preset", "huge"], "logmel has no preset 'huge'"),
    (["--model", "logmel", "-O", "colour=red"], "logmel: unknown options ['colour']"),
    (["--model", "logmel", "--shard", "2/2"], "--shard 2/2: i must be between 0 and N-1"),
    (["--model", "logmel", "--shard=-1/2"], "--shard -1/2: i must be between 0 and N-1"),
    (["--model", "logmel", "--shard", "first"], "--shard takes i/N"),
    (["--model", "logmel", "--seq", "7"], "no layer '7' to store as a sequence"),
])
def test_bad_arguments_exit_2_with_the_reason(tmp_path: Path, args: list[str], message: str) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["extract", *args, "-m", str(manifest), "-o", str(out), "--no-progress",
                                 "--num-workers", "0"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists() and not list(tmp_path.glob("out*.partial"))


def test_missing_manifest_exits_2(tmp_path: Path) -> None:
    result = _extract(tmp_path / "none.jsonl", tmp_path / "out.h5")
    assert result.exit_code == 2 and "no such manifest file" in result.output


def test_extractors_lists_every_family_and_preset() -> None:
    result = runner.invoke(app, ["extractors"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for family, presets in PRESETS.items():
        assert any(line.startswith(f"{family}: ") for line in lines), family
        for preset, upstream in presets.items():
            assert any(line.split(maxsplit=1) == [preset, upstream] for line in lines), (family, preset)
    assert set(PRESETS) == set(FAMILIES)


def test_extract_help_documents_the_options() -> None:
    result = runner.invoke(app, ["extract", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--seq", "--shard", "--checkpoint", "--model", "--num-workers", "--batch-seconds"):
        assert option in result.output, option


# ------------------------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def ravdess_two_actors(ravdess_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of RAVDESS actors 01 and 02 (120 clips), built by `ser manifest ravdess` on a copy."""
    work = tmp_path_factory.mktemp("ravdess")
    for actor in ("Actor_01", "Actor_02"):
        shutil.copytree(ravdess_root / actor, work / "corpus" / actor)
    manifest = work / "rav.jsonl"
    result = runner.invoke(app, ["manifest", "ravdess", str(work / "corpus"), "-o", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "120 utterances found, 120 written" in result.output
    return manifest


def _verify(store: Path, manifest: Path) -> None:
    result = runner.invoke(app, ["cache", "verify", str(store), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "120 items, 0 rejected" in result.output and "manifest coverage and fingerprints" in result.output


def test_real_ravdess_egemaps(ravdess_two_actors: Path) -> None:
    manifest = ravdess_two_actors
    store = manifest.with_name("egemaps.h5")
    result = runner.invoke(app, ["extract", "--model", "egemaps", "-m", str(manifest), "-o", str(store),
                                 "--no-progress", "--num-workers", "1"])  # eGeMAPS runs in the worker process
    assert result.exit_code == 0, result.output
    assert "120 extracted (0 were already done), 0 rejected" in result.output
    _verify(store, manifest)
    ids = [u.id for u in read_manifest(manifest)]
    with CacheReader(store) as reader:
        functionals = reader.pooled("functionals", ids=ids)
        assert functionals.shape == (120, 1, 88) and np.isfinite(functionals).all()
        assert len(np.unique(functionals.reshape(120, -1), axis=0)) == 120  # every clip has its own values
        assert reader.pooled("lld_mean").shape == (120, 1, 25)
        assert len(reader.attrs["upstream"]["functional_names"]) == 88


def test_real_ravdess_minilm_text_carries_only_the_statement(ravdess_two_actors: Path) -> None:
    """RAVDESS has two sentences, so the text branch sees two inputs whatever the emotion."""
    manifest = ravdess_two_actors
    store = manifest.with_name("minilm.h5")
    result = runner.invoke(app, ["extract", "--model", "minilm", "-m", str(manifest), "-o", str(store),
                                 "--no-progress", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    _verify(store, manifest)
    rows = read_manifest(manifest).utterances
    with CacheReader(store) as reader:
        mean = reader.pooled("mean", ids=[u.id for u in rows])
        assert mean.shape == (120, 7, 384) and np.isfinite(mean).all()
    flat = mean.reshape(120, -1)
    assert len(np.unique(flat, axis=0)) == 2
    by_text: dict[str, np.ndarray] = {}
    for row, vector in zip(rows, flat, strict=True):
        assert row.text is not None
        if row.text in by_text:
            np.testing.assert_array_equal(vector, by_text[row.text])
        by_text[row.text] = vector
    assert sorted(by_text) == ["Dogs are sitting by the door", "Kids are talking by the door"]
    labels = {row.label for row in rows}
    assert len(labels) == 8  # eight emotions map onto two vectors
