"""Classic heads (logreg, svm): the same harness as the neural heads, and exactly scikit-learn's numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ser.errors import UserError
from ser.fusion.run import FitConfig, run_fit
from ser.fusion.train import TrainConfig
from ser.manifests.labels import load_label_set
from ser.manifests.protocols import ValidationRule, make_folds
from ser.manifests.schema import read_manifest
from tests.fakes.caches import make_corpus


def _predictions(run_dir: Path) -> dict[tuple[str, str], str]:
    with open(run_dir / "predictions.csv", encoding="utf-8") as handle:
        return {(row["fold"], row["id"]): row["pred"] for row in csv.DictReader(handle)}


def direct_predictions(
    manifest: Path,
    features: dict[str, np.ndarray],
    make_estimator,
    grid: list[dict],
    label_set: str = "ravdess8",
    val_by: str = "utterance",
) -> dict[tuple[str, str], str]:
    """scikit-learn called directly on the same folds: z-score on train, choose the grid point on the
    validation UA (first of equal scores), refit on train + validation, predict the test rows."""
    labels = load_label_set(label_set)
    folds = make_folds(read_manifest(manifest), "speaker-loso", label_set=labels, rule=ValidationRule(by=val_by))
    out = {}
    for fold in folds.folds:

        def xy(ids):
            return (
                np.stack([features[i] for i in ids]).astype(np.float64),
                np.array([labels.index_of(folds.utterances[i]) for i in ids]),
            )

        (x_tr, y_tr), (x_va, y_va), (x_te, _) = xy(fold.train), xy(fold.validation), xy(fold.test)
        scaler = StandardScaler().fit(x_tr)
        scores = [
            balanced_accuracy_score(
                y_va,
                make_estimator(point, x_tr.shape[1]).fit(scaler.transform(x_tr), y_tr).predict(scaler.transform(x_va)),
            )
            for point in grid
        ]
        chosen = grid[int(np.argmax(scores))]
        x_all, y_all = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
        scaler = StandardScaler().fit(x_all)
        model = make_estimator(chosen, x_all.shape[1]).fit(scaler.transform(x_all), y_all)
        for uid, pred in zip(fold.test, model.predict(scaler.transform(x_te)), strict=True):
            out[(fold.name, uid)] = labels.classes[int(pred)]
    return out


def svc(point: dict, n_features: int) -> SVC:
    return SVC(C=point["C"], gamma=point["gamma"] / n_features, class_weight="balanced", break_ties=True)


def logreg(point: dict, n_features: int) -> LogisticRegression:
    return LogisticRegression(C=point["C"], class_weight="balanced", max_iter=5000)


def _layer1_features(store: Path) -> dict[str, np.ndarray]:
    from ser.cache.reader import CacheReader

    with CacheReader(store) as reader:
        return dict(zip(reader.ids, reader.pooled("mean", layers=[1])[:, 0], strict=True))


@pytest.mark.parametrize(
    ("fusion", "make", "grid"),
    [
        ("svm", svc, [{"C": c, "gamma": g} for c in (0.1, 1.0, 10.0, 100.0) for g in (0.1, 1.0, 10.0)]),
        ("logreg", logreg, [{"C": c} for c in (0.001, 0.01, 0.1, 1.0, 10.0)]),
    ],
)
def test_classic_heads_predict_exactly_what_sklearn_predicts_on_the_same_folds(
    tmp_path: Path, fusion, make, grid
) -> None:
    manifest, audio, _ = make_corpus(tmp_path, per_speaker=16)
    cfg = FitConfig(
        fusion=fusion,
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=f"{audio}:layer=1",
        label_set="ravdess8",
        val_by="utterance",
        train=TrainConfig.for_head(fusion),
        out=str(tmp_path),
    )
    run_dir = run_fit(cfg)
    ours = _predictions(run_dir)
    direct = direct_predictions(manifest, _layer1_features(audio), make, grid)
    assert len(ours) == 6 * 16 and ours == direct
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["fusion"] == fusion and len(metrics["runs"]) == 6
    assert len(metrics["runs"][0]["history"]) == len(grid)  # every grid point scored on validation
    probabilities = np.loadtxt(
        run_dir / "predictions.csv", delimiter=",", skiprows=1, usecols=range(5, 5 + len(metrics["classes"]))
    )
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_classic_heads_concatenate_modalities_and_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    manifest, audio, text = make_corpus(tmp_path, seq=True)
    base = dict(
        fusion="logreg",
        manifest=str(manifest),
        protocol="speaker-loso",
        label_set="ravdess8",
        val_by="utterance",
        folds=["spk0"],
        out=str(tmp_path / "runs"),
    )
    run_dir = run_fit(FitConfig(**base, audio=f"{audio}:layer=1", text=str(text), train=TrainConfig.for_head("logreg")))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["ua"]["mean"] > 0.5  # layer 1 carries the class; the noise text does not hide it
    with pytest.raises(UserError, match="pooled"):
        run_fit(FitConfig(**base, audio=f"{audio}:seq"))
    with pytest.raises(UserError, match="cannot learn layer weights"):
        run_fit(FitConfig(**base, audio=f"{audio}:layer=weighted"))
    assert len(list((tmp_path / "runs").glob("logreg-*"))) == 1  # the refused fits wrote nothing


def test_svm_rejects_an_unknown_kernel_before_anything_is_written(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    with pytest.raises(UserError, match="kernel"):
        run_fit(
            FitConfig(
                fusion="svm",
                manifest=str(manifest),
                protocol="speaker-loso",
                audio=f"{audio}:layer=1",
                label_set="ravdess8",
                head={"kernel": "poly"},
                out=str(tmp_path / "runs"),
            )
        )
    assert not (tmp_path / "runs").exists()
