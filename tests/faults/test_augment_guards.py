"""Issue 25 items 21-22: noise robustness that measures what it reports (no noise recordings shared by
training copies and corrupted test copies, robustness stores from the clean store's upstream, noise in
the training copies recorded), the protocol card's per-fold copy counts, and augmentation policies
whose class names are checked against the label set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cli import app
from ser.errors import UserError
from ser.extract.augment import AugmentError, load_policy, parse_corruption
from ser.extract.registry import build_extractor
from ser.extract.runner import RunOptions, run_extraction
from ser.fusion.config import FitConfig, TrainConfig
from ser.fusion.run import run_fit
from ser.manifests.labels import load_label_set
from ser.manifests.protocols import ValidationRule, make_folds
from ser.manifests.schema import read_manifest
from tests.fakes.caches import adaptation_record, four_speaker_corpus, write_pooled_store
from tests.fakes.tones import write_tone_corpus

RNG = np.random.default_rng(0)


def _noise_transform(**params: object) -> dict[str, object]:
    """A noise transform as a store records it inside its ``augmentation`` policy."""
    return {"kind": "noise", "params": {"snr_db": [10.0, 20.0], **params}, "p": 1.0}


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, object]:
    """4 speakers x 12 rows (ravdess8) and a function writing fake pooled stores over them."""
    manifest, rows = four_speaker_corpus(tmp_path)
    return {"manifest": manifest, "rows": rows}


def store(corpus: dict, path: Path, attrs: dict | None = None, copies: bool = False) -> Path:
    """A pooled store over the corpus rows (with one linked copy of every row when ``copies``)."""
    rows = corpus["rows"]
    entries = [(r.id, r.fingerprint(), RNG.normal(size=8)) for r in rows]
    links = {f"{r.id}@aug0": r.id for r in rows} if copies else None
    entries += [(f"{r.id}@aug0", r.fingerprint(), RNG.normal(size=8)) for r in rows] if copies else []
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_pooled_store(path, entries, attrs, links=links)


def fit(corpus: dict, tmp_path: Path, audio: Path | str, **changes: object) -> Path:
    base: dict[str, object] = dict(
        fusion="mlp",
        manifest=str(corpus["manifest"]),
        protocol="speaker-loso",
        audio=str(audio),
        val_by="utterance",
        val_fraction=0.25,
        train=TrainConfig(epochs=1, patience=0, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    base.update(changes)
    return run_fit(FitConfig(**base))  # type: ignore[arg-type]


def folds_of(manifest: Path):  # type: ignore[no-untyped-def]
    return make_folds(
        read_manifest(manifest),
        "speaker-loso",
        label_set=load_label_set("ravdess8"),
        rule=ValidationRule(by="utterance", fraction=0.25),
    )


# ------------------------------------------------------------------------- item 21: shared noise


def test_training_and_test_noise_from_one_folder_is_refused(corpus: dict, tmp_path: Path) -> None:
    musan = tmp_path / "musan" / "noise"
    musan.mkdir(parents=True)
    policy = {"seed": 0, "default": {"copies": 1, "transforms": [_noise_transform(folder="musan/noise")]}}
    aug = store(
        corpus, tmp_path / "aug.h5", {"augmentation": policy, "noise_folders": [str(musan.resolve())]}, copies=True
    )
    noisy = store(
        corpus,
        tmp_path / "musan10.h5",
        {"corruption": {"type": "noise", "snr_db": 10.0}, "noise_folders": [str(musan.resolve())]},
    )
    with pytest.raises(UserError) as err:
        fit(corpus, tmp_path, aug, robustness=[str(noisy)], folds=["spk0"])
    message = str(err.value)
    assert "\n" not in message
    assert str(aug) in message and str(noisy) in message and str(musan.resolve()) in message
    assert "share noise recordings" in message and "disjoint folders" in message
    assert not (tmp_path / "runs").exists()  # refused before any run directory

    # a store written before stores recorded their noise folders: the folder its config names
    config = {"corrupt": {"kind": "noise", "params": {"folder": str(musan), "snr_db": [10.0, 10.0]}}}
    older = store(corpus, tmp_path / "older10.h5", {"extractor": {"config_hash": "older", "config": config}})
    with pytest.raises(UserError, match="share noise recordings"):
        fit(corpus, tmp_path, aug, robustness=[str(older)], folds=["spk0"])

    # a subfolder of the policy's folder is the same recordings
    (musan / "street").mkdir()
    inner = store(
        corpus,
        tmp_path / "street10.h5",
        {"corruption": {"type": "street", "snr_db": 10.0}, "noise_folders": [str((musan / "street").resolve())]},
    )
    with pytest.raises(UserError, match="share noise recordings"):
        fit(corpus, tmp_path, aug, robustness=[str(inner)], folds=["spk0"])

    # disjoint folders, or the copies left out of training, are fine
    other = tmp_path / "musan" / "test-noise"
    other.mkdir()
    apart = store(
        corpus, tmp_path / "apart10.h5", {"corruption": {"type": "noise"}, "noise_folders": [str(other.resolve())]}
    )
    fit(corpus, tmp_path, aug, robustness=[str(apart)], folds=["spk0"])
    fit(corpus, tmp_path, aug, robustness=[str(noisy)], folds=["spk0"], augmented=False)


def test_extraction_records_the_resolved_noise_folders(tmp_path: Path) -> None:
    pytest.importorskip("audiomentations")
    manifest = write_tone_corpus(tmp_path, speakers=1, per_speaker=2)
    noise = tmp_path / "noise"
    noise.mkdir()
    soundfile.write(noise / "hum.wav", (0.1 * RNG.standard_normal(16000)).astype(np.float32), 16000)
    out = tmp_path / "noisy.h5"
    options = RunOptions(num_workers=0, progress=False, corrupt=parse_corruption(f"{noise}@10dB"))
    run_extraction(manifest, build_extractor("logmel"), out, options)
    with CacheReader(out) as reader:
        assert reader.attrs["noise_folders"] == [str(noise.resolve())]


# -------------------------------------------------------------- item 21: noise-augmented "clean" input


def test_noise_in_the_training_copies_is_recorded_on_a_robustness_card(corpus: dict, tmp_path: Path) -> None:
    policy = {"seed": 0, "default": {"copies": 1, "transforms": [_noise_transform(color="pink")]}}
    aug = store(corpus, tmp_path / "aug.h5", {"augmentation": policy, "noise_folders": []}, copies=True)
    white = store(corpus, tmp_path / "white10.h5", {"corruption": {"type": "white", "snr_db": 10.0}})
    run_dir = fit(corpus, tmp_path, aug, robustness=[str(white)], folds=["spk0"])
    card = json.loads((run_dir / "metrics.json").read_text())["protocol_card"]
    assert card["training_noise"] == ["pink noise"]
    run_dir = fit(corpus, tmp_path, aug, robustness=[str(white)], folds=["spk0"], augmented=False)
    card = json.loads((run_dir / "metrics.json").read_text())["protocol_card"]
    assert card["training_noise"] == []  # clean training: the copies are not used


# ----------------------------------------------------------------- item 21: upstreams compared


def _adapted(corpus: dict, fold_name: str, folder: Path) -> Path:
    """A clean audio store whose upstream was adapted on ``fold_name``'s train + validation rows."""
    record = adaptation_record(folds_of(corpus["manifest"]).fold(fold_name), folder)
    return store(corpus, folder / fold_name / "features.h5", {"upstream": {"model": "tiny", "adaptation": record}})


def test_an_unadapted_robustness_store_beside_adapted_stores_is_refused(corpus: dict, tmp_path: Path) -> None:
    for name in ("spk0", "spk1"):
        _adapted(corpus, name, tmp_path / "ft")
    unadapted = store(corpus, tmp_path / "white10.h5", {"upstream": {"model": "tiny"}, "corruption": {"type": "w"}})
    with pytest.raises(UserError) as err:
        fit(corpus, tmp_path, tmp_path / "ft" / "{fold}" / "features.h5", robustness=[str(unadapted)], folds=["spk0"])
    message = str(err.value)
    assert message.startswith("fold spk0: robustness store") and str(unadapted) in message
    assert "adapted on fold None, not 'spk0'" in message and "\n" not in message
    # another model's weights are refused the same way
    weights = store(corpus, tmp_path / "w.h5", {"upstream": {"model": "tiny", "weights_sha256": "a"}})
    clean = store(corpus, tmp_path / "clean.h5", {"upstream": {"model": "tiny", "weights_sha256": "b"}})
    with pytest.raises(UserError, match=r"weights_sha256 'a', not 'b'"):
        fit(corpus, tmp_path, clean, robustness=[str(weights)], folds=["spk0"])
    # per-fold robustness stores from each fold's own adapted upstream pass
    for name in ("spk0", "spk1"):
        adapted = CacheReader(tmp_path / "ft" / name / "features.h5").attrs["upstream"]
        store(corpus, tmp_path / "noisy" / name / "white10.h5", {"upstream": adapted, "corruption": {"type": "w"}})
    fit(
        corpus,
        tmp_path,
        tmp_path / "ft" / "{fold}" / "features.h5",
        robustness=[str(tmp_path / "noisy" / "{fold}" / "white10.h5")],
        folds=["spk0", "spk1"],
    )


# ------------------------------------------------------------------------ item 22: smaller ones


def test_the_card_counts_the_copies_each_fold_used(corpus: dict, tmp_path: Path) -> None:
    aug = store(corpus, tmp_path / "aug.h5", {"augmentation": {"seed": 0}}, copies=True)  # 48 copies
    run_dir = fit(corpus, tmp_path, aug, folds=["spk0", "spk1"])
    card = json.loads((run_dir / "metrics.json").read_text())["protocol_card"]
    fold_set = folds_of(corpus["manifest"])
    expected = {name: len(fold_set.fold(name).train) for name in ("spk0", "spk1")}
    assert card["augmented_training_copies"] == expected
    assert all(0 < count < 48 for count in expected.values())


def test_a_policy_class_outside_the_label_set_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("audiomentations")
    manifest = write_tone_corpus(tmp_path, speakers=1, per_speaker=4)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "seed: 0\ndefault: {copies: 1, chain: [{gain: {db: [-3, 3]}}]}\n"
        "classes:\n  angry: {copies: 2, chain: [{gain: {db: [-6, -3]}}]}\n"
    )
    out = tmp_path / "aug.h5"
    with pytest.raises(AugmentError) as err:
        run_extraction(
            manifest,
            build_extractor("logmel"),
            out,
            RunOptions(num_workers=0, progress=False, augment=load_policy(policy)),
        )
    assert str(err.value) == (
        f"{policy}: class 'angry' is not a class of label set ravdess8 (neu, cal, hap, sad, ang, fea, dis, sur); "
        "name classes as the label set does"
    )
    assert not out.exists()
    result = CliRunner().invoke(
        app,
        [
            "extract",
            "--model",
            "logmel",
            "-m",
            str(manifest),
            "-o",
            str(out),
            "--augment",
            str(policy),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2 and "class 'angry' is not a class of label set ravdess8" in result.output
    policy.write_text(policy.read_text().replace("angry", "ang"))
    run_extraction(
        manifest, build_extractor("logmel"), out, RunOptions(num_workers=0, progress=False, augment=load_policy(policy))
    )
    with CacheReader(out) as reader:
        assert len(reader) == 4 + 3 + 2  # 4 clips, the default's copy of 3, two copies of the angry one
