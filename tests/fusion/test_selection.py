"""Model selection on validation (--search), seed ensembles (--ensemble) and pooled metrics."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import ser.fusion.run as run_module
from ser.errors import UserError
from ser.fusion.config import parse_search, search_candidates
from ser.fusion.metrics import compute_metrics
from ser.fusion.run import FitConfig, run_fit
from ser.fusion.train import TrainConfig
from tests.fakes.caches import make_corpus


def fit_config(tmp_path: Path, **changes: object) -> FitConfig:
    manifest, audio, _ = make_corpus(tmp_path, per_speaker=16)
    base = dict(
        fusion="mlp",
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=f"{audio}:layer=1",
        label_set="ravdess8",
        val_by="utterance",
        folds=["spk0", "spk1", "spk2"],
        seeds=[0],
        train=TrainConfig(epochs=6, patience=0, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    base.update(changes)
    return FitConfig(**base)  # type: ignore[arg-type]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_parse_search_reads_values_as_yaml_and_bracketed_lists_whole() -> None:
    assert parse_search(["train.lr=1e-4,1e-3", "head.dropout=0.2,0.5"]) == {
        "train.lr": [1e-4, 1e-3],
        "head.dropout": [0.2, 0.5],
    }
    assert parse_search(["head.hidden=[[256],[512,256]]"]) == {"head.hidden": [[256], [512, 256]]}
    assert search_candidates({"train.lr": [1, 2], "head.dropout": [0.1, 0.2]}) == [
        {"train.lr": 1, "head.dropout": 0.1},
        {"train.lr": 1, "head.dropout": 0.2},
        {"train.lr": 2, "head.dropout": 0.1},
        {"train.lr": 2, "head.dropout": 0.2},
    ]
    assert search_candidates({}) == [{}]
    for bad in (["lr=1,2"], ["train.lr"], ["train.lr="]):
        with pytest.raises(UserError):
            search_candidates(parse_search(bad))
    with pytest.raises(UserError, match="repeat"):
        search_candidates({"train.lr": [1, 1]})
    with pytest.raises(UserError, match=r"only train\.NAME and head\.NAME"):
        search_candidates({"seeds": [[0], [1]]})


def test_search_trains_every_candidate_tests_only_the_chosen_one_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    selected: list[tuple[str, int, int]] = []
    tested: list[tuple[str, int, int]] = []
    original_select, original_test = run_module.select_members, run_module.test_member

    def spy_select(specs):
        selected.extend((spec.fold, spec.seed, spec.cfg.epochs) for spec in specs)
        return original_select(specs)

    def spy_test(selection, data, rows, *, extra_tests=None, candidate=None):
        tested.append((selection.fold, selection.seed, len(selection.history)))
        return original_test(selection, data, rows, extra_tests=extra_tests, candidate=candidate)

    monkeypatch.setattr(run_module, "select_members", spy_select)
    monkeypatch.setattr(run_module, "test_member", spy_test)
    cfg = fit_config(tmp_path, seeds=[0, 1], search={"train.epochs": [1, 4], "head.dropout": [0.0, 0.5]})
    metrics = json.loads((run_fit(cfg) / "metrics.json").read_text())
    assert len(selected) == 3 * 2 * 4  # folds x seeds x candidates
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 3 * 2  # each (fold, seed) tested once
    search = metrics["search"]
    assert search["candidates"][1] == {"train.epochs": 1, "head.dropout": 0.5}
    for fold, choice in search["folds"].items():
        scores = choice["validation_ua"]
        assert choice["chosen"] == int(np.argmax(scores))  # the best mean validation UA over seeds
        chosen_epochs = search["candidates"][choice["chosen"]]["train.epochs"]
        assert {(f, s) for f, s, n in tested if f == fold and n == chosen_epochs} == {(fold, 0), (fold, 1)}
        runs = [r for r in metrics["runs"] if r["fold"] == fold]
        assert all(r["candidate"] == choice["candidate"] for r in runs)
        assert np.mean([r["validation"]["ua"] for r in runs]) == pytest.approx(scores[choice["chosen"]])
    assert len(search["seconds_per_candidate"]) == 4 and min(search["seconds_per_candidate"]) > 0
    assert [r["seed"] for r in metrics["runs"]] == [0, 0, 0, 1, 1, 1]  # seed-major, as without a search


def test_search_values_are_checked_before_a_run_directory_exists(tmp_path: Path) -> None:
    cfg = fit_config(tmp_path)
    for search, message in (
        ({"train.nope": [1, 2]}, "not train settings"),
        ({"head.nope": [1, 2]}, "nope"),
        ({"train.optimizer": ["adamw", "rmsprop"]}, "optimizer"),
    ):
        with pytest.raises(UserError, match=message):
            run_fit(replace(cfg, search=search))
    assert not (tmp_path / "runs").exists()


def test_seed_ensemble_is_the_mean_of_the_seed_members_probabilities(tmp_path: Path) -> None:
    run_dir = run_fit(fit_config(tmp_path, seeds=[0, 1, 2], ensemble=True, head={"dropout": 0.5}))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    members = read_rows(run_dir / "predictions.csv")
    ensemble = read_rows(run_dir / "predictions_ensemble.csv")
    columns = [f"p_{c}" for c in metrics["classes"]]
    assert len(ensemble) == len(members) // 3 == 3 * 16
    for row in ensemble:
        seeds = [m for m in members if m["fold"] == row["fold"] and m["id"] == row["id"]]
        assert [int(m["seed"]) for m in seeds] == [0, 1, 2] and row["seeds"] == "0 1 2"
        mean = np.mean([[float(m[c]) for c in columns] for m in seeds], axis=0)
        assert np.allclose([float(row[c]) for c in columns], mean, atol=2e-6)
        assert row["pred"] == metrics["classes"][int(np.argmax([float(row[c]) for c in columns]))]
    for fold_run in metrics["ensemble"]["runs"]:
        rows = [r for r in ensemble if r["fold"] == fold_run["fold"]]
        index = {c: i for i, c in enumerate(metrics["classes"])}
        expected = compute_metrics(
            [index[r["true"]] for r in rows], [index[r["pred"]] for r in rows], metrics["classes"]
        )
        assert fold_run["test"]["ua"] == pytest.approx(expected["ua"])
    assert metrics["ensemble"]["test"]["ua"]["mean"] == pytest.approx(
        np.mean([r["test"]["ua"] for r in metrics["ensemble"]["runs"]])
    )


def test_ensemble_needs_two_seeds(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="two or more seeds"):
        run_fit(fit_config(tmp_path, ensemble=True))


def test_pooled_metrics_are_those_of_all_folds_test_predictions_taken_together(tmp_path: Path) -> None:
    run_dir = run_fit(fit_config(tmp_path, seeds=[0, 1]))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = read_rows(run_dir / "predictions.csv")
    classes = metrics["classes"]
    per_seed = []
    for seed in ("0", "1"):
        mine = [r for r in rows if r["seed"] == seed]
        per_seed.append(
            compute_metrics([classes.index(r["true"]) for r in mine], [classes.index(r["pred"]) for r in mine], classes)
        )
    pooled = metrics["test_pooled"]
    for key in ("ua", "wa", "macro_f1", "weighted_f1"):
        assert pooled[key]["values"] == pytest.approx([m[key] for m in per_seed])
        assert pooled[key]["mean"] == pytest.approx(np.mean([m[key] for m in per_seed]))
    assert [p["n"] for p in pooled["per_seed"]] == [3 * 16, 3 * 16]
