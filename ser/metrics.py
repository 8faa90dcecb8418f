"""Accuracy metrics of a classifier, from the confusion matrix: one definition for every stage that
reports them (fitting heads, adapting upstreams).

* UA, unweighted accuracy = macro recall = balanced accuracy: the mean, over the classes that occur
  in the true labels, of each class's recall. A class that never occurs has no recall and is left
  out of the mean (as scikit-learn's ``balanced_accuracy_score``); a class that occurs but is never
  predicted counts with recall 0.
* WA, weighted accuracy = plain accuracy (each class weighted by its support).

numpy is imported inside the functions, so importing this module stays free of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def class_indices(values: Any, name: str, n_classes: int) -> np.ndarray:
    """``(N,)`` class indices (a sequence, numpy array or CPU tensor) as a checked int64 array.

    Raises ``ValueError`` for another shape, non-integer values or an index outside ``[0, n_classes)``.
    """
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {arr.shape}")
    is_float = np.issubdtype(arr.dtype, np.floating)
    whole = np.issubdtype(arr.dtype, np.integer) or (is_float and bool(np.all(arr % 1 == 0)))
    if not whole:
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} holds indices outside [0, {n_classes}): min {arr.min()}, max {arr.max()}")
    return arr


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = true class, columns = predicted class, of ``(N,)`` index arrays."""
    import numpy as np

    true = class_indices(y_true, "y_true", n_classes)
    pred = class_indices(y_pred, "y_pred", n_classes)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {true.shape[0]} vs {pred.shape[0]}")
    return np.bincount(true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def unweighted_accuracy(confusion: np.ndarray) -> float:
    """UA of a ``(C, C)`` confusion matrix (rows = true class): mean recall over the classes present."""
    import numpy as np

    support = confusion.sum(axis=1)
    hits = np.diag(confusion).astype(np.float64)
    present = support > 0
    if not present.any():
        raise ValueError("cannot compute UA over an empty set")
    return float(np.mean(hits[present] / support[present]))


def weighted_accuracy(confusion: np.ndarray) -> float:
    """WA (plain accuracy) of a ``(C, C)`` confusion matrix."""
    import numpy as np

    total = int(confusion.sum())
    if total == 0:
        raise ValueError("cannot compute WA over an empty set")
    return float(np.diag(confusion).astype(np.float64).sum() / total)


def unweighted_accuracy_of(y_true: Any, y_pred: Any, n_classes: int) -> float:
    """UA of ``(N,)`` true and predicted class indices in ``[0, n_classes)``."""
    return unweighted_accuracy(confusion_matrix(y_true, y_pred, n_classes))
