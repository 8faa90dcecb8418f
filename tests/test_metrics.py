"""ser.metrics: UA and WA from the confusion matrix, and the label checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ser.metrics import confusion_matrix, unweighted_accuracy, unweighted_accuracy_of, weighted_accuracy


def test_confusion_rows_are_true_classes_and_columns_predictions() -> None:
    confusion = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]


def test_ua_averages_recall_over_present_classes_and_wa_is_accuracy() -> None:
    confusion = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])  # class 2 never occurs
    assert unweighted_accuracy(confusion) == pytest.approx((8 / 10 + 1 / 2) / 2)
    assert weighted_accuracy(confusion) == pytest.approx(9 / 12)
    assert unweighted_accuracy_of([0] * 10 + [1, 1], [0] * 8 + [1, 1, 0, 1], 3) == unweighted_accuracy(confusion)


@pytest.mark.parametrize(
    ("true", "pred", "message"),
    [([0, 1], [0], "differ in length"), ([0, 3], [0, 1], "outside"), ([0.5], [0], "integer"), ([[0]], [[0]], "1-D")],
)
def test_bad_labels_are_refused(true: object, pred: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        confusion_matrix(true, pred, 3)


def test_an_empty_set_has_no_accuracy() -> None:
    empty = np.zeros((2, 2), dtype=np.int64)
    for metric in (unweighted_accuracy, weighted_accuracy):
        with pytest.raises(ValueError, match="empty set"):
            metric(empty)


def test_the_neutral_leaves_import_no_heavy_module_and_no_other_ser_module() -> None:
    code = (
        "import sys, ser.atomic_files, ser.early_stopping, ser.metrics; "
        "print(sorted(m for m in sys.modules if m in ('numpy', 'torch') or (m.startswith('ser.') and "
        "m not in ('ser.atomic_files', 'ser.early_stopping', 'ser.metrics'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
