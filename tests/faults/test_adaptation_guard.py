"""The adapted-encoder guard is tied to the weights, not to a side file: a checkpoint copied without
``ser_finetune.json`` or re-saved through ``save_pretrained`` is still recognised at extraction and at
``ser fit``; and ``ser fit`` on per-fold adapted stores refuses validation rows that trained the encoder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ser.cache.adaptation import PROVENANCE_NAME, REGISTRY_ENV
from ser.cache.reader import CacheReader
from ser.errors import UserError
from ser.fusion.config import FitConfig, TrainConfig
from ser.fusion.run import run_fit
from tests.fakes.finetune import small_finetune_config

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def adapted(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fold spk0 of speaker-LOSO adapted from a tiny random HuBERT (split_seed 0); returns its checkpoint."""
    from ser.adapt.train import adapt_fold
    from tests.extract.conftest import _save_ssl

    root = tmp_path_factory.mktemp("guard")
    base = _save_ssl(root / "base", "hubert", "group", seed=7)
    cfg = small_finetune_config(tone_corpus, base, epochs=1, unfreeze=1, lr=1e-3)
    return adapt_fold(cfg, "spk0", root / "ft").checkpoint


def _extract(checkpoint: Path, store: Path, manifest: Path) -> Path:
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    extractor = build_extractor("hubert", "base", checkpoint=str(checkpoint))
    run_extraction(manifest, extractor, store, RunOptions(num_workers=0, progress=False))
    return store


def _fit(manifest: Path, audio: str, out: Path, **changes: object) -> Path:
    settings: dict[str, object] = dict(
        fusion="mlp",
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=audio,
        val_by="utterance",
        val_fraction=0.25,
        train=TrainConfig(epochs=1, patience=0, batch_size=16),
        out=str(out),
    )
    settings.update(changes)
    return run_fit(FitConfig(**settings))  # type: ignore[arg-type]


def _resaved(checkpoint: Path, folder: Path) -> Path:
    """The adapted weights loaded and saved again with save_pretrained (no side file, no ser metadata)."""
    from transformers import AutoModel

    AutoModel.from_pretrained(str(checkpoint)).save_pretrained(str(folder))
    return folder


def _upstream(store: Path) -> dict:
    with CacheReader(store) as reader:
        return dict(reader.attrs["upstream"])


def test_a_copy_without_the_side_file_is_still_refused_on_the_folds_it_leaks_into(
    adapted: Path, tone_corpus: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(adapted, copy)
    (copy / PROVENANCE_NAME).unlink()
    store = _extract(copy, tmp_path / "copy.h5", tone_corpus)
    upstream = _upstream(store)
    assert upstream["adaptation"]["fold"] == "spk0" and "spk1" in upstream["adaptation"]["speakers"]
    assert (
        upstream["tensors_sha256"] == _upstream(_extract(adapted, tmp_path / "orig.h5", tone_corpus))["tensors_sha256"]
    )
    with pytest.raises(UserError, match=r"fold spk1: .*copy\.h5.*-adapted for fold spk0 .*test speakers spk1"):
        _fit(tone_corpus, f"{store}:layer=weighted", tmp_path / "runs")  # every fold, as `ser fit` does
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_resave_through_save_pretrained_is_still_refused(adapted: Path, tone_corpus: Path, tmp_path: Path) -> None:
    folder = _resaved(adapted, tmp_path / "resaved")
    assert not (folder / PROVENANCE_NAME).exists()
    store = _extract(folder, tmp_path / "resaved.h5", tone_corpus)
    assert _upstream(store)["adaptation"]["fold"] == "spk0"
    with pytest.raises(UserError, match=r"fold spk2: .*-adapted for fold spk0 .*test speakers spk2"):
        _fit(tone_corpus, f"{store}:layer=weighted", tmp_path / "runs", folds=["spk2"])


def test_a_store_extracted_before_registration_is_checked_by_its_tensor_digest(
    adapted: Path, tone_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    registry = os.environ[REGISTRY_ENV]
    folder = _resaved(adapted, tmp_path / "resaved")
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "empty-registry"))  # another registry at extraction
    store = _extract(folder, tmp_path / "unregistered.h5", tone_corpus)
    assert "adaptation" not in _upstream(store) and _upstream(store)["tensors_sha256"]
    _fit(tone_corpus, f"{store}:layer=weighted", tmp_path / "runs-unknown", folds=["spk1"])  # not recognisable
    monkeypatch.setenv(REGISTRY_ENV, registry)
    with pytest.raises(UserError, match=r"fold spk1: .*unregistered\.h5.*-adapted for fold spk0 .*test speakers spk1"):
        _fit(tone_corpus, f"{store}:layer=weighted", tmp_path / "runs", folds=["spk1"])


def test_validation_rows_that_trained_the_encoder_are_refused(adapted: Path, tone_corpus: Path, tmp_path: Path) -> None:
    import json

    from ser.adapt.train import fold_set_of

    store = _extract(adapted, tmp_path / "spk0" / "features.h5", tone_corpus)
    audio = f"{tmp_path}/{{fold}}/features.h5:layer=weighted"
    trained = set(json.loads((adapted / PROVENANCE_NAME).read_text())["trained_on"]["train_ids"])
    _, _, folds = fold_set_of(small_finetune_config(tone_corpus, adapted, split_seed=3))
    validation = folds.fold("spk0").validation  # what the fit carves with split_seed 3
    leaked = sorted(set(validation) & trained)
    assert leaked and len(validation) == 8
    message = rf"fold spk0: {len(leaked)} of the fit's 8 validation utterances \(e\.g\. {leaked[0]}, "
    with pytest.raises(UserError, match=message) as err:
        _fit(tone_corpus, audio, tmp_path / "runs", folds=["spk0"], split_seed=3)
    assert str(store) in str(err.value) and "split_seed" in str(err.value)
    run = _fit(tone_corpus, audio, tmp_path / "runs", folds=["spk0"])  # the fine-tuning's carving: fine
    assert (run / "metrics.json").is_file()
