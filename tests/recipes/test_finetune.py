"""``run_finetune`` from Python: the per-fold adapt -> extract -> fit loop on a tiny random HuBERT, its
hooks, its resume, and every refusal made before any training."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from ser.adapt.config import FinetuneConfig
from ser.adapt.train import FoldAdaptation
from ser.cache.reader import CacheReader
from ser.errors import UserError
from ser.extract.runner import RunReport
from ser.recipes.finetune import FinetuneResult, choose_preset, fold_fit_config, run_finetune
from tests.fakes.finetune import small_finetune_config

pytest.importorskip("transformers")


def config(manifest: Path, model: Path, **changes: Any) -> FinetuneConfig:
    return small_finetune_config(manifest, model, **{"epochs": 1, "unfreeze": 1, **changes})


class Recorder:
    """Hooks that remember what the recipe reported, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Path]] = []

    def adapted(self, adaptation: FoldAdaptation) -> None:
        self.events.append(("adapted", adaptation.fold, adaptation.checkpoint))

    def extracted(self, fold: str, report: RunReport) -> None:
        self.events.append(("extracted", fold, report.output))


TwoFolds = tuple[Path, Recorder, FinetuneResult]
"""(out, the hooks, the result) of the module's one full run."""


@pytest.fixture(scope="module")
def two_folds(tone_corpus: Path, tiny_hubert: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoFolds:
    """Folds spk0 and spk2 adapted, extracted and fitted in one call; returns (out, the hooks, the result)."""
    root = tmp_path_factory.mktemp("recipe-finetune")
    fit_yaml = root / "fit.yaml"
    fit_yaml.write_text(f"fusion: mlp\nout: {root / 'runs'}\ntrain: {{epochs: 2, patience: 0}}\n")
    hooks = Recorder()
    out = root / "ft"
    result = run_finetune(
        config(tone_corpus, tiny_hubert),
        out,
        folds=["spk0", "spk2"],
        extract=True,
        fit_config=fit_yaml,
        hooks=hooks,
    )
    return out, hooks, result


def test_each_fold_is_adapted_then_extracted_with_its_own_checkpoint(two_folds: TwoFolds) -> None:
    out, hooks, result = two_folds
    assert isinstance(result, FinetuneResult)
    assert [fold.fold for fold in result.folds] == ["spk0", "spk2"]
    assert hooks.events == [
        ("adapted", "spk0", out / "spk0" / "checkpoint"),
        ("extracted", "spk0", out / "spk0" / "features.h5"),
        ("adapted", "spk2", out / "spk2" / "checkpoint"),
        ("extracted", "spk2", out / "spk2" / "features.h5"),
    ]
    for fold in result.folds:
        assert not fold.adaptation.skipped and fold.adaptation.trainable
        assert fold.features is not None and fold.features.extracted == 32 and not fold.features.rejected
        with CacheReader(fold.features.output) as reader:
            adaptation = reader.attrs["upstream"]["adaptation"]
        assert adaptation["fold"] == fold.fold and fold.fold not in adaptation["speakers"]
    assert not (out / "spk1").exists()  # only the folds asked for


def test_the_fit_tests_each_fold_on_its_own_store(two_folds: TwoFolds) -> None:
    _, _, result = two_folds
    assert result.fit_dir is not None
    metrics = json.loads((result.fit_dir / "metrics.json").read_text())
    assert [run["fold"] for run in metrics["runs"]] == ["spk0", "spk2"]
    assert metrics["protocol_card"]["protocol"] == "speaker-loso"


def test_a_second_call_reuses_checkpoints_and_stores_and_logs_without_hooks(
    two_folds: TwoFolds, tone_corpus: Path, tiny_hubert: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, _, _ = two_folds
    with caplog.at_level(logging.INFO, logger="ser.recipes.finetune"):
        again = run_finetune(config(tone_corpus, tiny_hubert), out, folds=["spk2"], extract=True)
    (fold,) = again.folds
    assert fold.adaptation.skipped and fold.features is not None and fold.features.already_complete
    assert again.fit_dir is None
    assert f"fold spk2: checkpoint {out / 'spk2' / 'checkpoint'}" in caplog.text
    assert f"fold spk2: features {out / 'spk2' / 'features.h5'}" in caplog.text


def test_without_extract_only_checkpoints_are_written(tone_corpus: Path, tiny_hubert: Path, tmp_path: Path) -> None:
    result = run_finetune(config(tone_corpus, tiny_hubert, unfreeze=0), tmp_path, folds=["spk3"])
    (fold,) = result.folds
    assert fold.features is None and fold.adaptation.checkpoint == tmp_path / "spk3" / "checkpoint"
    assert sorted(p.name for p in (tmp_path / "spk3").iterdir()) == ["checkpoint"]


@pytest.mark.parametrize(
    ("changes", "yaml", "message"),
    [
        ({"fit_config": "f.yaml"}, None, "add --extract"),
        ({"folds": ["spk9"]}, None, "spk9"),
        ({"folds": []}, None, "no fold given"),
        ({"preset": "huge"}, None, "unknown hubert preset 'huge'; choose one of base, large"),
        ({"extract": True}, "fusion: mlp\nprotocol: speaker-kfold\n", "sets protocol differently"),
        ({"extract": True}, "fusion: mlp\nval_by: speaker\n", "sets val_by differently"),
        ({"extract": True}, "fusion: mlp\naudio: one.h5:layer=weighted\n", "names one store for every fold"),
        ({"extract": True}, "fusion: mlp\nepochs: 3\n", "unknown config keys ['epochs']"),
    ],
)
def test_bad_requests_are_refused_before_any_training(
    tone_corpus: Path, tiny_hubert: Path, tmp_path: Path, changes: dict, yaml: str | None, message: str
) -> None:
    if yaml is not None:
        changes = {**changes, "fit_config": tmp_path / "fit.yaml"}
        (tmp_path / "fit.yaml").write_text(yaml)
    out = tmp_path / "ft"
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_finetune(config(tone_corpus, tiny_hubert), out, **{"folds": ["spk0"], **changes})
    assert not out.exists()


def test_choose_preset_defaults_to_the_familys_first_and_refuses_other_families() -> None:
    assert choose_preset("hubert", None) == "base"
    assert choose_preset("wavlm", "large") == "large"
    with pytest.raises(UserError, match="--model must be one of hubert, wav2vec2, wavlm, not 'bert'"):
        choose_preset("bert", None)


def test_fold_fit_config_takes_the_finetunings_folds_and_a_store_per_fold(
    tone_corpus: Path, tiny_hubert: Path, tmp_path: Path
) -> None:
    fit_yaml = tmp_path / "fit.yaml"
    fit_yaml.write_text("fusion: mlp\nlabel_set: null\n")  # the same value as the fine-tuning's is accepted
    cfg = config(tone_corpus, tiny_hubert, split_seed=4, protocol_options={})
    fit = fold_fit_config(cfg, ["spk1", "spk3"], tmp_path / "ft", fit_yaml, "stat=mean,layer=1")
    assert fit.folds == ["spk1", "spk3"]
    assert fit.audio == f"{tmp_path / 'ft'}/{{fold}}/features.h5:stat=mean,layer=1"
    assert (fit.manifest, fit.protocol, fit.val_by, fit.val_fraction, fit.split_seed) == (
        str(tone_corpus),
        "speaker-loso",
        "utterance",
        0.25,
        4,
    )
    own = tmp_path / "own.yaml"
    own.write_text("fusion: mlp\naudio: 'stores/{fold}.h5:layer=2'\n")
    assert fold_fit_config(cfg, ["spk1"], tmp_path, own, "layer=weighted").audio == "stores/{fold}.h5:layer=2"
