"""Adaptation's validation UA is the fitting stage's UA: the same number, also when a class is never
predicted or never occurs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from ser.adapt import train as adapt_train
from ser.fusion.metrics import compute_metrics

CLASSES = ("angry", "happy", "neutral", "sad", "surprised")


def adaptation_validation_ua(
    monkeypatch: pytest.MonkeyPatch, true: np.ndarray, pred: np.ndarray, n_classes: int
) -> float:
    """Supervised ``_Trainer.validate`` over batches whose logits predict ``pred`` for labels ``true``."""
    batches = [(torch.zeros(len(t), 1, 4), torch.from_numpy(t)) for t in np.array_split(true, 3)]
    logits = iter(torch.nn.functional.one_hot(torch.from_numpy(p), n_classes).float() for p in np.array_split(pred, 3))
    monkeypatch.setattr(adapt_train, "loader", lambda *args, **kwargs: batches)
    trainer: Any = SimpleNamespace(
        upstream=torch.nn.Identity(),
        head=torch.nn.Identity(),
        cfg=SimpleNamespace(batch_size=4, num_workers=0),
        val_data=None,
        supervised=True,
        n_classes=n_classes,
        _loss=lambda crops, labels: (torch.tensor(1.0), next(logits)),
    )
    return adapt_train._Trainer.validate(trainer)


def test_a_class_never_predicted_counts_with_recall_zero_in_both_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])
    pred = np.array([0, 1, 0, 1, 0, 0, 2, 2, 0, 0, 4, 0])  # class 3 (sad) is never predicted
    expected = np.mean([2 / 3, 1 / 2, 2 / 4, 0 / 1, 1 / 2])
    adapted = adaptation_validation_ua(monkeypatch, true, pred, len(CLASSES))
    fitted = compute_metrics(true, pred, CLASSES)["ua"]
    assert adapted == fitted == pytest.approx(expected)


def test_a_class_that_never_occurs_is_left_out_in_both_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    true = np.array([0, 0, 1, 1, 1, 2, 4, 4])  # class 3 has no validation row
    pred = np.array([0, 3, 1, 3, 1, 2, 4, 0])  # ... but is predicted twice
    expected = np.mean([1 / 2, 2 / 3, 1 / 1, 1 / 2])
    adapted = adaptation_validation_ua(monkeypatch, true, pred, len(CLASSES))
    fitted = compute_metrics(true, pred, CLASSES)
    assert adapted == fitted["ua"] == pytest.approx(expected)
    assert fitted["absent_classes"] == ["sad"]
