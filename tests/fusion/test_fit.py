"""The fit loop and run directory on small synthetic caches: protocol hygiene, determinism, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import ser.fusion.train as train_module
from ser.cli import app
from ser.errors import UserError
from ser.fusion.data import Standardizer, parse_view
from ser.fusion.run import FitConfig, apply_overrides, config_from_dict, run_fit
from ser.fusion.train import TrainConfig
from tests.fakes.caches import make_corpus


def fit_config(tmp_path: Path, manifest: Path, audio_store: Path, **changes: object) -> FitConfig:
    base = dict(fusion="mlp", manifest=str(manifest), protocol="speaker-loso", audio=f"{audio_store}:layer=1",
                label_set="ravdess8", folds=["spk0", "spk1"], seeds=[0],
                train=TrainConfig(epochs=15, patience=5, batch_size=16), out=str(tmp_path / "runs"))
    base.update(changes)
    return FitConfig(**base)  # type: ignore[arg-type]


def test_test_rows_are_touched_once_and_never_for_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    calls: list[tuple[bool, set[int]]] = []
    original = train_module.iterate_batches

    def spy(data, rows, batch_size, *, shuffle, generator, standardizer):
        calls.append((shuffle, set(int(r) for r in rows)))
        return original(data, rows, batch_size, shuffle=shuffle, generator=generator, standardizer=standardizer)

    fitted_on: list[set[int]] = []
    original_fit = Standardizer.fit.__func__

    def spy_fit(cls, data, train_rows):
        fitted_on.append(set(int(r) for r in train_rows))
        return original_fit(cls, data, train_rows)

    monkeypatch.setattr(train_module, "iterate_batches", spy)
    monkeypatch.setattr(Standardizer, "fit", classmethod(spy_fit))
    cfg = fit_config(tmp_path, manifest, audio, folds=["spk0"])
    run_dir = run_fit(cfg)
    with open(run_dir / "predictions.csv", encoding="utf-8") as handle:
        predictions = list(csv.DictReader(handle))
    test_ids = {p["id"] for p in predictions}
    assert test_ids == {f"s0_{k:02d}" for k in range(24)}  # the held-out speaker, once each
    # row numbers of the test speaker in the joined data (manifest order, speaker 0 first)
    test_rows = set(range(24))
    train_calls = [rows for shuffled, rows in calls if shuffled]
    eval_calls = [rows for shuffled, rows in calls if not shuffled]
    assert train_calls and all(not (rows & test_rows) for rows in train_calls)
    assert all(not (rows & test_rows) for rows in eval_calls[:-1])  # every validation pass
    assert eval_calls[-1] == test_rows  # the single test pass, last
    assert len(fitted_on) == 1 and not (fitted_on[0] & test_rows)
    validation_rows = eval_calls[0]
    assert not (fitted_on[0] & validation_rows)  # standardised with training rows only


def test_same_seed_same_numbers_and_outputs(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    first = json.loads((run_fit(fit_config(tmp_path, manifest, audio)) / "metrics.json").read_text())
    again_dir = run_fit(fit_config(tmp_path, manifest, audio, out=str(tmp_path / "again")))
    again = json.loads((again_dir / "metrics.json").read_text())
    assert first["test"] == again["test"]
    assert [r["history"] for r in first["runs"]] == [r["history"] for r in again["runs"]]
    assert {p.name for p in again_dir.iterdir()} >= {"config.yaml", "metrics.json", "predictions.csv",
                                                     "confusion.png", "train.log"}
    assert again_dir.name == Path(run_fit(fit_config(tmp_path, manifest, audio)).name).name


def test_checkpoint_is_the_best_validation_epoch_and_signal_is_learned(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    metrics = json.loads((run_fit(fit_config(tmp_path, manifest, audio)) / "metrics.json").read_text())
    for run in metrics["runs"]:
        scores = [h["val_ua"] for h in run["history"]]
        assert run["best_epoch"] == 1 + int(np.argmax(scores))
        assert run["validation"]["ua"] == max(scores)
    assert metrics["test"]["ua"]["mean"] > 0.9  # layer 1 separates the 4 classes
    assert metrics["protocol_card"]["speaker_independent"] is True
    assert len(metrics["test"]["ua"]["values"]) == 2


def test_learned_layer_weights_find_the_informative_layer(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    cfg = fit_config(tmp_path, manifest, audio, audio=f"{audio}:layer=weighted",
                     train=TrainConfig(epochs=40, patience=0, batch_size=16, lr=3e-3))
    metrics = json.loads((run_fit(cfg) / "metrics.json").read_text())
    for run in metrics["runs"]:
        weights = run["layer_weights"]["audio"]
        assert len(weights) == 3 and abs(sum(weights) - 1) < 1e-5
        assert int(np.argmax(weights)) == 1


def test_sequence_heads_and_fusion_of_two_stores(tmp_path: Path) -> None:
    manifest, audio, text = make_corpus(tmp_path, seq=True)
    cfg = fit_config(tmp_path, manifest, audio, fusion="fleser", text=str(text))
    assert json.loads((run_fit(cfg) / "metrics.json").read_text())["test"]["ua"]["mean"] > 0.8
    cfg = fit_config(tmp_path, manifest, audio, fusion="audio_transformer", audio=f"{audio}:seq=layer_01",
                     head={"specaugment": False})
    with pytest.raises(UserError, match="audio_transformer takes seq audio"):
        run_fit(fit_config(tmp_path, manifest, audio, fusion="audio_transformer"))
    assert json.loads((run_fit(cfg) / "metrics.json").read_text())["runs"][0]["test"]["n"] == 24


def test_config_precedence_and_errors(tmp_path: Path) -> None:
    record = apply_overrides({"fusion": "mlp", "manifest": "m", "protocol": "p", "train": {"lr": 0.1}},
                             ["train.lr=1e-4", "head.hidden=[64, 32]", "seeds=[0, 1]"])
    cfg = config_from_dict(record)
    assert cfg.train.lr == 1e-4 and cfg.head == {"hidden": [64, 32]} and cfg.seeds == [0, 1]
    with pytest.raises(UserError, match="unknown config keys"):
        config_from_dict({**record, "learning_rate": 1})
    with pytest.raises(UserError, match="unknown train keys"):
        config_from_dict({**record, "train": {"lrr": 1}})
    with pytest.raises(UserError, match="needs protocol"):
        config_from_dict({"fusion": "mlp", "manifest": "m"})
    assert parse_view("a.h5:stat=std,layer=weighted").layer == "weighted"
    with pytest.raises(UserError, match="unknown view option"):
        parse_view("a.h5:bogus=1")


def test_cli_fit_with_yaml_and_set(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump({"fusion": "mlp", "protocol": "speaker-loso", "label_set": "ravdess8",
                                      "train": {"epochs": 5, "batch_size": 16}, "head": {"hidden": [32]}}))
    result = CliRunner().invoke(app, ["fit", "--config", str(config), "-m", str(manifest), "--audio",
                                      f"{audio}:layer=1", "--folds", "spk0,spk1", "--set", "train.epochs=3",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "mean ± std over folds and seeds: UA" in result.output
    run_dir = next((tmp_path / "runs").iterdir())
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["config"]["train"]["epochs"] == 3 and saved["config"]["head"] == {"hidden": [32]}
    assert all(len(r["history"]) <= 3 for r in json.loads((run_dir / "metrics.json").read_text())["runs"])
    result = CliRunner().invoke(app, ["fit", "--fusion", "nope", "-m", str(manifest), "-p", "speaker-loso",
                                      "--audio", str(audio)])
    assert result.exit_code == 2 and "unknown fusion head" in result.output
    result = CliRunner().invoke(app, ["fusion", "list"])
    assert "fleser" in result.output and "FleSER" in result.output
