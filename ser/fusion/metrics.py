"""Evaluation metrics: computed ONCE over the whole evaluated set, never per batch.

Naming is the standard one (several seed repositories swap UA and WA; we never do):

* ``ua`` — unweighted accuracy = macro recall = balanced accuracy: the mean, over the classes that
  occur in ``y_true``, of each class's recall. A class with zero support has no defined recall and
  is left out of the mean (this is exactly sklearn's ``balanced_accuracy_score``; sklearn's
  ``recall_score(average="macro", labels=range(C))`` would instead count it as recall 0).
* ``wa`` — weighted accuracy = plain accuracy (each class weighted by its support).
* ``macro_f1`` / ``weighted_f1`` — F1 over ``labels=range(C)`` with ``zero_division=0``: a class
  absent from both ``y_true`` and ``y_pred`` contributes F1 = 0 to the macro mean (and weight 0 to
  the weighted mean). ``absent_classes`` in the result names such classes so a report can flag them.
* ``confusion`` — C×C counts, rows = true class, columns = predicted class, both in ``classes``
  order, every class present even with zero support.

Everything is derived from the confusion matrix with numpy (the tests check each number against
scikit-learn), so the per-epoch validation pass stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ser.metrics import confusion_matrix, unweighted_accuracy, weighted_accuracy

DEFAULT_AGGREGATE_KEYS: tuple[str, ...] = ("ua", "wa", "macro_f1", "weighted_f1")


def compute_metrics(y_true: Any, y_pred: Any, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of one evaluated set.

    Args:
        y_true: ``(N,)`` true class indices into ``classes`` (list, numpy array or CPU tensor).
        y_pred: ``(N,)`` predicted class indices into ``classes``.
        classes: the C class names; index ``i`` of the labels means ``classes[i]``.

    Returns:
        A JSON-serialisable dict: ``ua``, ``wa``, ``macro_f1``, ``weighted_f1`` (floats in [0, 1]),
        ``per_class`` ``{name: {"precision", "recall", "f1", "support"}}`` (zero-support classes
        report precision/recall/F1 as sklearn does with ``zero_division=0``), ``confusion``
        (C×C list of lists, rows = true, columns = predicted, ``classes`` order), ``n`` (N),
        ``classes`` (the names, in order) and ``absent_classes`` (names with zero support).
    """
    classes = list(classes)
    n_classes = len(classes)
    if n_classes == 0:
        raise ValueError("classes must name at least one class")
    if len(set(classes)) != n_classes:
        raise ValueError(f"duplicate class names in {classes}")
    # Everything follows from the confusion matrix; numpy instead of sklearn's metric functions
    # because this runs after every validation epoch, where sklearn's input checks cost ~30 ms a call.
    # The test suite checks every number against sklearn.
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, n_classes), classes)


def metrics_from_confusion(confusion: Any, classes: Sequence[str]) -> dict[str, Any]:
    """The metrics of [`compute_metrics`][ser.fusion.metrics.compute_metrics] from a ``(C, C)`` confusion matrix (rows =
    true class): e.g. the sum of several folds' matrices gives the metrics of their pooled test predictions."""
    classes = list(classes)
    n_classes = len(classes)
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.shape != (n_classes, n_classes):
        raise ValueError(f"confusion must be {n_classes}x{n_classes}, got shape {confusion.shape}")
    if confusion.sum() == 0:
        raise ValueError("cannot compute metrics over an empty set")
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion).astype(np.float64)
    ua = unweighted_accuracy(confusion)  # mean recall over the classes present in y_true
    wa = weighted_accuracy(confusion)
    precision = np.divide(hits, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(n_classes), where=(support + predicted) > 0)
    macro_f1 = float(f1.mean())
    weighted_f1 = float((f1 * support).sum() / support.sum())
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "ua": ua,
        "wa": wa,
        "macro_f1": macro_f1,
        "weighted_f1": weighted_f1,
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
        "n": int(confusion.sum()),
        "classes": classes,
        "absent_classes": [name for i, name in enumerate(classes) if support[i] == 0],
    }


def aggregate(
    results: Iterable[Mapping[str, Any]], keys: Sequence[str] = DEFAULT_AGGREGATE_KEYS
) -> dict[str, dict[str, Any]]:
    """Mean ± std of scalar metrics over runs (folds, seeds, or folds × seeds).

    ``std`` is the SAMPLE standard deviation (``ddof=1``, the spread one would expect between
    repeated runs) when there are at least two values, and 0.0 for a single value.

    Args:
        results: metric dicts as returned by [`compute_metrics`][ser.fusion.metrics.compute_metrics] (any mapping
        holding ``keys``). keys: the scalar entries to aggregate.

    Returns:
        ``{key: {"mean": float, "std": float, "values": [float, ...]}}`` in ``keys`` order.
    """
    results = list(results)
    if not results:
        raise ValueError("aggregate needs at least one metric dict")
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values: list[float] = []
        for i, result in enumerate(results):
            if key not in result:
                raise KeyError(f"metric {key!r} missing from result {i} (has {', '.join(map(str, result))})")
            values.append(float(result[key]))
        mean = math.fsum(values) / len(values)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "values": values}
    return out
