"""The fit loop and run directory on small synthetic caches: protocol hygiene, determinism, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import UserError
from ser.fusion.data import Standardizer, parse_view
from ser.fusion.run import FitConfig, apply_overrides, config_from_dict, run_fit
from ser.fusion.train import TrainConfig
from tests.fakes.caches import make_corpus
from tests.fusion.row_spy import spy_rows


def fit_config(tmp_path: Path, manifest: Path, audio_store: Path, **changes: object) -> FitConfig:
    base = dict(
        fusion="mlp",
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=f"{audio_store}:layer=1",
        label_set="ravdess8",
        folds=["spk0", "spk1"],
        seeds=[0],
        train=TrainConfig(epochs=15, patience=5, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    base.update(changes)
    return FitConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["sequential", "stacked"])
def test_test_rows_are_touched_once_and_never_for_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    fitted_on: list[set[int]] = []
    original_fit = Standardizer.fit.__func__

    def spy_fit(cls, data, train_rows):
        fitted_on.append(set(int(r) for r in train_rows))
        return original_fit(cls, data, train_rows)

    read = spy_rows(monkeypatch)
    monkeypatch.setattr(Standardizer, "fit", classmethod(spy_fit))
    cfg = fit_config(tmp_path, manifest, audio, folds=["spk0"])
    cfg.train.engine = engine
    run_dir = run_fit(cfg)
    with open(run_dir / "predictions.csv", encoding="utf-8") as handle:
        predictions = list(csv.DictReader(handle))
    test_ids = {p["id"] for p in predictions}
    assert test_ids == {f"s0_{k:02d}" for k in range(24)}  # the held-out speaker, once each
    # row numbers of the test speaker in the joined data (manifest order, speaker 0 first)
    test_rows = set(range(24))
    calls = [(training, set(int(r) for r in rows)) for training, _, rows in read]
    train_calls = [rows for shuffled, rows in calls if shuffled]
    eval_calls = [rows for shuffled, rows in calls if not shuffled]
    assert train_calls and all(not (rows & test_rows) for rows in train_calls)
    assert len(eval_calls) > 2 and all(not (rows & test_rows) for rows in eval_calls[:-1])  # validation passes
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
    assert {p.name for p in again_dir.iterdir()} >= {
        "config.yaml",
        "metrics.json",
        "predictions.csv",
        "confusion.png",
        "train.log",
    }
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
    cfg = fit_config(
        tmp_path,
        manifest,
        audio,
        audio=f"{audio}:layer=weighted",
        train=TrainConfig(epochs=40, patience=0, batch_size=16, lr=3e-3),
    )
    metrics = json.loads((run_fit(cfg) / "metrics.json").read_text())
    for run in metrics["runs"]:
        weights = run["layer_weights"]["audio"]
        assert len(weights) == 3 and abs(sum(weights) - 1) < 1e-5
        assert int(np.argmax(weights)) == 1


def test_sequence_heads_and_fusion_of_two_stores(tmp_path: Path) -> None:
    manifest, audio, text = make_corpus(tmp_path, seq=True)
    cfg = fit_config(tmp_path, manifest, audio, fusion="fleser", text=str(text))
    assert json.loads((run_fit(cfg) / "metrics.json").read_text())["test"]["ua"]["mean"] > 0.8
    cfg = fit_config(
        tmp_path,
        manifest,
        audio,
        fusion="audio_transformer",
        audio=f"{audio}:seq=layer_01",
        head={"specaugment": False},
    )
    with pytest.raises(UserError, match="audio_transformer takes seq audio"):
        run_fit(fit_config(tmp_path, manifest, audio, fusion="audio_transformer"))
    assert json.loads((run_fit(cfg) / "metrics.json").read_text())["runs"][0]["test"]["n"] == 24


def test_config_precedence_and_errors(tmp_path: Path) -> None:
    record = apply_overrides(
        {"fusion": "mlp", "manifest": "m", "protocol": "p", "train": {"lr": 0.1}},
        ["train.lr=1e-4", "head.hidden=[64, 32]", "seeds=[0, 1]"],
    )
    cfg = config_from_dict(record)
    assert cfg.train.lr == 1e-4 and cfg.head == {"hidden": [64, 32]} and cfg.seeds == [0, 1]
    # defaults < head preset < YAML < --set
    fleser = config_from_dict(
        apply_overrides(
            {"fusion": "fleser", "manifest": "m", "protocol": "p", "train": {"lr": "3e-4", "epochs": 7}},
            ["train.epochs=9"],
        )
    )
    assert (fleser.train.optimizer, fleser.train.weight_decay, fleser.train.batch_size) == ("adamw", 1e-2, 64)
    assert (fleser.train.schedule, fleser.train.gamma, fleser.train.plateau_patience) == ("plateau", 0.3, 30)
    assert fleser.train.lr == 3e-4 and fleser.train.epochs == 9 and fleser.train.patience == 0
    assert fleser.train == TrainConfig.for_head("fleser", lr=3e-4, epochs=9)
    assert config_from_dict({**record, "train": {}}).train == TrainConfig()  # mlp: no preset
    with pytest.raises(UserError, match="unknown fusion head 'nope'"):
        config_from_dict({**record, "fusion": "nope"})
    with pytest.raises(UserError, match=r"train\.lr must be a number"):
        config_from_dict({**record, "train": {"lr": "fast"}})
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
    config.write_text(
        yaml.safe_dump(
            {
                "fusion": "mlp",
                "protocol": "speaker-loso",
                "label_set": "ravdess8",
                "train": {"epochs": 5, "batch_size": 16},
                "head": {"hidden": [32]},
            }
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "--config",
            str(config),
            "-m",
            str(manifest),
            "--audio",
            f"{audio}:layer=1",
            "--folds",
            "spk0,spk1",
            "--set",
            "train.epochs=3",
            "--out",
            str(tmp_path / "runs"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mean ± std over folds: UA" in result.output  # one seed
    run_dir = next((tmp_path / "runs").iterdir())
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["config"]["train"]["epochs"] == 3 and saved["config"]["head"] == {"hidden": [32]}
    assert all(len(r["history"]) <= 3 for r in json.loads((run_dir / "metrics.json").read_text())["runs"])
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "--fusion",
            "nope",
            "-m",
            str(manifest),
            "-p",
            "speaker-loso",
            "--audio",
            str(audio),
            "--out",
            str(tmp_path / "failed"),
        ],
    )
    assert result.exit_code == 2 and "unknown fusion head" in result.output
    assert not (tmp_path / "failed").exists()
    result = CliRunner().invoke(app, ["fusion", "list"])
    assert "fleser" in result.output and "FleSER" in result.output


def test_failed_fits_leave_no_run_directory(tmp_path: Path) -> None:
    manifest, audio, text = make_corpus(tmp_path)
    out = tmp_path / "runs"
    bad = [
        ({"fusion": "audio_transformer"}, "audio_transformer takes seq audio"),
        ({"fusion": "patamia", "text": str(text), "mocap": str(audio)}, r"--mocap STORE:seq .*--seq grid"),
        ({"head": {"hidden": [8], "no_such": 1}}, "fusion head mlp: .*no_such"),
        ({"head": {"dropout": "lots"}}, r"head\.dropout must be a number"),
        ({"train": TrainConfig(optimizer="adagrad")}, "train.optimizer must be one of adam, adamw, sgd"),
        ({"train": TrainConfig(loss="focal", loss_options={"lam": 0.5})}, "not options of loss 'focal'"),
        ({"train": TrainConfig(loss="hinge")}, "train.loss: unknown loss 'hinge'"),
        ({"folds": ["spk9"]}, "spk9"),
        ({"audio": str(tmp_path / "no.h5")}, "no.h5"),
    ]
    for changes, message in bad:
        with pytest.raises(UserError, match=message):
            run_fit(fit_config(tmp_path, manifest, audio, **changes))
        assert not out.exists(), changes


def test_config_yaml_records_the_resolved_head_train_and_input_provenance(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    cfg = fit_config(
        tmp_path,
        manifest,
        audio,
        folds=["spk0"],
        head={"dropout": "1e-1"},
        train=TrainConfig(epochs=2, patience=0, batch_size=16, loss="focal", loss_options={"gamma": "2"}),
    )
    run_dir = run_fit(cfg)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["head_resolved"] == {"hidden": [512], "dropout": 0.1, "input_dropout": None}
    assert saved["config"]["head"] == {"dropout": 0.1}
    assert saved["config"]["train"]["loss_options"] == {"gamma": 2.0}
    assert saved["config"]["train"]["epochs"] == 2 and set(saved["config"]["train"]) == set(vars(TrainConfig()))
    assert saved["recipe"]["name"] == "ser" and saved["recipe"]["train"] == {}
    assert "train.patience=0 (the ser recipe: default)" not in saved["recipe"]["departures"]
    audio_input = saved["inputs"]["audio"]
    assert audio_input["view"] == "audio.h5:stat=mean,layer=1"  # the statistic as resolved
    assert audio_input["store"] == str(audio.resolve()) and audio_input["extractor"] == {"config_hash": "a"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["runs"][0]["epochs_run"] == 2


def test_cli_flags_override_yaml_and_presets_reach_config_yaml(tmp_path: Path) -> None:
    manifest, audio, text = make_corpus(tmp_path)
    config = tmp_path / "fit.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "fusion": "fleser",
                "protocol": "speaker-loso",
                "label_set": "ravdess8",
                "manifest": "elsewhere.jsonl",
                "seeds": [5],
                "folds": ["spk2"],
                "audio": f"{audio}:layer=0",
                "train": {"lr": "2e-3", "epochs": 4},
            }
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "--config",
            str(config),
            "-m",
            str(manifest),
            "--audio",
            f"{audio}:layer=1",
            "--text",
            str(text),
            "--seeds",
            "0",
            "--folds",
            "spk0",
            "--set",
            "train.epochs=2",
            "--set",
            "head.alpha=5e-1",
            "--out",
            str(tmp_path / "runs"),
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    record, train = saved["config"], saved["config"]["train"]
    assert record["manifest"] == str(manifest) and record["audio"].endswith(":layer=1")  # flags over YAML
    assert record["seeds"] == [0] and record["folds"] == ["spk0"]
    assert train["lr"] == 2e-3 and train["epochs"] == 2  # YAML over preset, --set over YAML
    assert (train["optimizer"], train["batch_size"], train["schedule"]) == ("adamw", 64, "plateau")  # preset
    assert saved["recipe"]["train"]["lr"] == 1e-4 and saved["head_resolved"]["alpha"] == 0.5
    assert "train.lr=0.002 (the ser recipe: 0.0001)" in saved["recipe"]["departures"]
    assert "train.epochs=2 (the ser recipe: 100)" in saved["recipe"]["departures"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [(r["fold"], r["seed"], r["epochs_run"]) for r in metrics["runs"]] == [("spk0", 0, 2)]


def test_training_recipes_are_the_head_records() -> None:
    from ser.fusion.heads import HEADS, train_preset

    for name, info in HEADS.items():
        for recipe_name, recipe in info.recipes.items():
            assert train_preset(name, recipe_name) == dict(recipe.train)
            fitted = TrainConfig.for_head(name, recipe_name)
            assert all(getattr(fitted, key) == value for key, value in recipe.train.items())
    copy = train_preset("fleser")
    copy["lr"] = 1.0
    assert HEADS["fleser"].recipes["ser"].train["lr"] == 1e-4  # a copy: the record does not change
    with pytest.raises(TypeError):
        HEADS["fleser"].recipes["ser"].train["lr"] = 1.0  # type: ignore[index]
