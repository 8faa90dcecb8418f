"""Augmented and corrupted extraction: copies stored as linked rows, seeded, part of the config;
corrupted evaluation copies; refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cache.verify import verify_store
from ser.cli import app
from ser.extract.augment import parse_corruption, parse_policy, source_of
from ser.extract.registry import build_extractor
from ser.extract.runner import RunOptions, run_extraction
from ser.extract.update import expected_fingerprints
from ser.manifests.schema import read_manifest
from tests.fakes.tones import write_tone_corpus

pytest.importorskip("audiomentations")

POLICY = {
    "seed": 3,
    "default": {"copies": 1, "chain": [{"gain": {"db": [-6, 6]}}]},
    "classes": {"sad": {"copies": 2, "chain": [{"pitch_shift": {"semitones": [-3, 3]}}]}},
}


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), speakers=2, per_speaker=4)


def extract(manifest: Path, out: Path, **options: object) -> Path:
    run_extraction(manifest, build_extractor("logmel"), out, RunOptions(num_workers=0, progress=False, **options))  # type: ignore[arg-type]
    return out


def test_copies_are_linked_rows_with_their_own_features(tones: Path, tmp_path: Path) -> None:
    store = extract(tones, tmp_path / "aug.h5", augment=parse_policy(POLICY))
    rows = read_manifest(tones).utterances
    sad = [u.id for u in rows if u.label == "sad"]
    with CacheReader(store) as reader:
        copies = [i for i in reader.ids if source_of(i) is not None]
        assert len(reader) == len(rows) + len(copies)
        assert len(copies) == 2 * len(sad) + (len(rows) - len(sad))  # sad: 2 copies, the others 1
        assert {source_of(i) for i in copies} == {u.id for u in rows}
        assert reader.links == {copy: source_of(copy) for copy in copies}  # recorded by the extraction
        assert f"{sad[0]}@aug1" in reader.index and f"{rows[0].id}@aug1" not in reader.index
        original = reader.pooled("mean", ids=[rows[0].id])
        copy = reader.pooled("mean", ids=[f"{rows[0].id}@aug0"])
        assert not np.allclose(original, copy)
        assert reader.attrs["augmentation"]["seed"] == 3
        assert "augment" in reader.attrs["extractor"]["config"]
    assert verify_store(store, expected_fingerprints(store, read_manifest(tones))).ok


def test_same_policy_same_copies_and_a_different_config_hash(tones: Path, tmp_path: Path) -> None:
    first = extract(tones, tmp_path / "a.h5", augment=parse_policy(POLICY))
    second = extract(tones, tmp_path / "b.h5", augment=parse_policy(POLICY))
    plain = extract(tones, tmp_path / "plain.h5")
    with CacheReader(first) as a, CacheReader(second) as b, CacheReader(plain) as c:
        ids = sorted(a.ids)
        assert ids == sorted(b.ids)
        assert np.array_equal(a.pooled("mean", ids=ids), b.pooled("mean", ids=ids))
        originals = sorted(c.ids)
        assert np.array_equal(a.pooled("mean", ids=originals), c.pooled("mean", ids=originals))  # originals untouched
        assert a.attrs["extractor"]["config_hash"] != c.attrs["extractor"]["config_hash"]
        assert "augment" not in c.attrs["extractor"]["config"]


def test_augment_only_one_split(tmp_path: Path) -> None:
    import json

    manifest = write_tone_corpus(tmp_path, speakers=2, per_speaker=4)
    lines = manifest.read_text().splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    for i, row in enumerate(rows):
        row["split"] = "train" if i % 2 == 0 else "test"
    manifest.write_text("\n".join([lines[0], *map(json.dumps, rows)]) + "\n")
    store = extract(manifest, tmp_path / "train-only.h5", augment=parse_policy(POLICY), augment_splits=("train",))
    with CacheReader(store) as reader:
        sources = {source_of(i) for i in reader.ids} - {None}
    assert sources == {r["id"] for r in rows if r["split"] == "train"}


def test_corrupted_copies_replace_every_row(tones: Path, tmp_path: Path) -> None:
    clean = extract(tones, tmp_path / "clean.h5")
    noisy = extract(tones, tmp_path / "white0.h5", corrupt=parse_corruption("white@0dB"))
    with CacheReader(clean) as c, CacheReader(noisy) as n:
        ids = sorted(c.ids)
        assert sorted(n.ids) == ids
        assert n.attrs["corruption"] == {"type": "white", "snr_db": 0.0}
        gap = np.abs(c.pooled("mean", ids=ids) - n.pooled("mean", ids=ids)).mean()
        assert gap > 0.5  # log-mel means move a lot under noise as loud as the signal


def test_cli_refusals(tones: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: {sad: [{warp: {x: 1}}]}\n")
    result = runner.invoke(
        app,
        [
            "extract",
            "--model",
            "logmel",
            "-m",
            str(tones),
            "-o",
            str(tmp_path / "x.h5"),
            "--augment",
            str(bad),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2 and "unknown transform 'warp'" in result.output
    result = runner.invoke(
        app,
        [
            "extract",
            "--model",
            "logmel",
            "-m",
            str(tones),
            "-o",
            str(tmp_path / "y.h5"),
            "--corrupt",
            "white@loud",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2 and "--corrupt" in result.output
    result = runner.invoke(
        app,
        [
            "extract",
            "--model",
            "mocap",
            "-m",
            str(tones),
            "-o",
            str(tmp_path / "z.h5"),
            "--corrupt",
            "white@5dB",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2 and "transform audio" in result.output
    good = tmp_path / "good.yaml"
    good.write_text("default: [{gain: {db: 3}}]\n")
    result = runner.invoke(
        app,
        [
            "extract",
            "--model",
            "logmel",
            "-m",
            str(tones),
            "-o",
            str(tmp_path / "w.h5"),
            "--augment",
            str(good),
            "--corrupt",
            "white@5dB",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2 and "use one per store" in result.output
