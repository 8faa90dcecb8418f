"""ser.fusion.metrics: UA/WA naming, agreement with sklearn, confusion layout, absent classes, aggregation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from ser.fusion.metrics import aggregate, compute_metrics

CLASSES = ["ang", "hap", "sad", "neu"]


def test_imbalanced_example_ua_is_balanced_accuracy_wa_is_accuracy() -> None:
    y_true = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    y_pred = [0] * 10
    m = compute_metrics(y_true, y_pred, ["neg", "pos"])
    # WA = 8/10 correct; UA = (recall 8/8 + recall 0/2) / 2.
    assert m["wa"] == pytest.approx(0.8, abs=1e-12)
    assert m["ua"] == pytest.approx(0.5, abs=1e-12)
    # The swapped naming of the seed repositories would fail these checks.
    assert m["ua"] != pytest.approx(0.8)
    assert m["wa"] != pytest.approx(0.5)
    # F1: class 0 precision 0.8, recall 1 -> 8/9; class 1 F1 0.
    assert m["per_class"]["neg"]["f1"] == pytest.approx(8 / 9)
    assert m["per_class"]["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["macro_f1"] == pytest.approx(4 / 9)
    assert m["weighted_f1"] == pytest.approx(0.8 * 8 / 9)
    assert m["confusion"] == [[8, 0], [2, 0]]
    assert m["n"] == 10
    assert m["absent_classes"] == []


def test_hand_computed_three_classes() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 1, 0, 1, 2, 2]
    m = compute_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["wa"] == pytest.approx(4 / 6)
    assert m["ua"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = len(CLASSES)
    y_true = rng.choice(n_classes, size=500, p=[0.1, 0.2, 0.3, 0.4])
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, n_classes, 500))
    m = compute_metrics(y_true, y_pred, CLASSES)
    labels = list(range(n_classes))
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["ua"] == pytest.approx(recall_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert m["wa"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="macro"), abs=1e-12)
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="weighted"), abs=1e-12)
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert m["ua"] != pytest.approx(m["wa"])  # imbalanced classes: the two differ
    assert sum(c["support"] for c in m["per_class"].values()) == m["n"] == 500
    json.dumps(m)  # JSON-serialisable (plain floats / ints / lists)


def test_confusion_rows_are_true_columns_are_predicted_in_class_order() -> None:
    # Three "sad" items all predicted "ang"; one "neu" predicted "hap".
    m = compute_metrics([2, 2, 2, 3], [0, 0, 0, 1], CLASSES)
    confusion = np.array(m["confusion"])
    assert confusion.shape == (4, 4)
    assert confusion[2, 0] == 3  # row sad, column ang
    assert confusion[3, 1] == 1  # row neu, column hap
    assert confusion.sum() == 4
    assert confusion[0].sum() == 0 and confusion[1].sum() == 0  # zero-support rows kept
    assert m["classes"] == CLASSES


def test_absent_class_left_out_of_ua() -> None:
    # Class 2 ("sad") never occurs in y_true but is predicted once.
    y_true = [0, 0, 1, 1, 3, 3]
    y_pred = [0, 2, 1, 1, 3, 0]
    m = compute_metrics(y_true, y_pred, CLASSES)
    # Recalls over PRESENT classes: ang 1/2, hap 2/2, neu 1/2 -> UA 2/3 (sad is not counted as 0).
    assert m["ua"] == pytest.approx(2 / 3)
    with pytest.warns(UserWarning):  # sklearn warns about y_pred-only classes but agrees
        assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    # recall_score over labels=range(C) would count sad as recall 0 -> (1/2 + 1 + 0 + 1/2) / 4.
    macro_recall_all = recall_score(y_true, y_pred, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    assert macro_recall_all == pytest.approx(0.5)
    assert m["ua"] != pytest.approx(macro_recall_all)
    assert m["absent_classes"] == ["sad"]
    assert m["per_class"]["sad"]["support"] == 0
    assert m["confusion"][2] == [0, 0, 0, 0]
    assert m["wa"] == pytest.approx(4 / 6)


def test_absent_class_never_predicted_counts_zero_in_macro_f1() -> None:
    m = compute_metrics([0, 1], [0, 1], ["a", "b", "c"])
    assert m["ua"] == 1.0 and m["wa"] == 1.0
    assert m["macro_f1"] == pytest.approx(2 / 3)  # documented: labels=range(C), zero_division=0
    assert m["weighted_f1"] == 1.0
    assert m["absent_classes"] == ["c"]


def test_accepts_numpy_and_tensors() -> None:
    a = compute_metrics(np.array([0, 1, 1]), torch.tensor([0, 1, 0]), ["x", "y"])
    b = compute_metrics([0, 1, 1], [0, 1, 0], ["x", "y"])
    assert a == b


@pytest.mark.parametrize(
    ("y_true", "y_pred", "classes", "message"),
    [
        ([0, 1], [0], ["a", "b"], "differ in length"),
        ([], [], ["a"], "empty"),
        ([0, 2], [0, 1], ["a", "b"], "outside"),
        ([0, -1], [0, 1], ["a", "b"], "outside"),
        ([0, 1], [0, 1], [], "at least one class"),
        ([[0, 1]], [[0, 1]], ["a", "b"], "1-D"),
        ([0.5, 1], [0, 1], ["a", "b"], "integer"),
    ],
)
def test_rejects_bad_input(y_true: list, y_pred: list, classes: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(y_true, y_pred, classes)


def test_aggregate_mean_and_sample_std() -> None:
    runs = [
        {"ua": 0.6, "wa": 0.7, "macro_f1": 0.5, "weighted_f1": 0.55},
        {"ua": 0.7, "wa": 0.8, "macro_f1": 0.6, "weighted_f1": 0.65},
        {"ua": 0.8, "wa": 0.9, "macro_f1": 0.7, "weighted_f1": 0.75},
    ]
    out = aggregate(runs)
    assert list(out) == ["ua", "wa", "macro_f1", "weighted_f1"]
    assert out["ua"]["mean"] == pytest.approx(0.7)
    # sample std (ddof=1): sqrt((0.01 + 0 + 0.01) / 2) = 0.1; population std would be 0.0816...
    assert out["ua"]["std"] == pytest.approx(0.1)
    assert out["ua"]["std"] != pytest.approx(math.sqrt(0.02 / 3))
    assert out["wa"]["values"] == [0.7, 0.8, 0.9]
    assert out["weighted_f1"]["mean"] == pytest.approx(0.65)


def test_aggregate_single_run_and_custom_keys() -> None:
    out = aggregate([{"ua": 0.42, "wa": 0.5}], keys=("ua",))
    assert out == {"ua": {"mean": 0.42, "std": 0.0, "values": [0.42]}}


def test_aggregate_over_compute_metrics_results() -> None:
    a = compute_metrics([0, 0, 0, 1], [0, 0, 0, 0], ["x", "y"])  # ua 0.5, wa 0.75
    b = compute_metrics([0, 1, 1, 1], [0, 1, 1, 1], ["x", "y"])  # ua 1.0, wa 1.0
    out = aggregate([a, b])
    assert out["ua"]["mean"] == pytest.approx(0.75)
    assert out["wa"]["mean"] == pytest.approx(0.875)
    assert out["ua"]["std"] == pytest.approx(np.std([0.5, 1.0], ddof=1))


def test_aggregate_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])
    with pytest.raises(KeyError, match="macro_f1"):
        aggregate([{"ua": 1.0, "wa": 1.0}])
