"""Classic baselines in the same harness as the neural heads: scikit-learn estimators on pooled vectors.

Every SER paper table has an SVM or logistic-regression row on the same features and folds; here
it runs under the same protocols, run directories, metrics and reports as every other head
(``ser fit --fusion svm``). Per fold and seed:

1. concatenate the pooled inputs (modality-name order, as the ``mlp`` head) into ``(N, sum D)``
   float64 and z-score them with scikit-learn's ``StandardScaler`` fitted on the fold's TRAINING
   rows (``train.normalize``, on by default);
2. fit one estimator per point of the head's small grid (``C``, and ``gamma`` for the RBF kernel)
   on the training rows, class-balanced (``class_weight="balanced"``), and keep the point with the
   best validation ``train.select`` metric (UA by default; ties go to the earlier grid point);
3. with ``train.refit`` (the classic heads' preset) refit that point on train + validation, with
   the standardiser refitted on those rows too;
4. evaluate the test rows once.

Probabilities: logistic regression's ``predict_proba``; for the SVM the softmax of its one-vs-rest
decision values, with ``break_ties=True`` so the predicted class is exactly that argmax (and what
scikit-learn's ``predict`` returns). Classes absent from a fold's training rows get probability 0.
Both estimators are deterministic (lbfgs and libsvm draw no random numbers), so each fold is fitted
once and its result recorded for every seed (cells of a grid still pair up by fold and seed:
``ser.fusion.engine.share_deterministic``). Their BLAS products run on one thread unless the problem
is large (``ser.threads``): threads on small products cost more than they bring.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser.errors import UserError
from ser.fusion import progress
from ser.fusion.data import FusionData
from ser.fusion.metrics import compute_metrics
from ser.threads import blas_threads, blas_threads_for

logger = logging.getLogger(__name__)


def design_matrix(data: FusionData, rows: np.ndarray) -> np.ndarray:
    """``(len(rows), sum D)`` float64: the pooled inputs of ``rows`` side by side, in modality-name order."""
    parts = []
    for modality in sorted(data.modalities):
        pooled = data.modalities[modality].pooled
        if pooled is None or pooled.ndim != 2:
            raise UserError(
                f"classic heads take one pooled vector per modality; {modality} is "
                f"{data.modalities[modality].view.describe()}"
            )
        parts.append(pooled[rows])
    return np.concatenate(parts, axis=1).astype(np.float64)


def fit_scaler(x: np.ndarray, normalize: bool) -> Any:
    """scikit-learn's ``StandardScaler`` fitted on ``x`` (training rows only), or None without ``normalize``."""
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(x) if normalize else None


@dataclass
class ClassicPredictor:
    """A fitted estimator with its input scaling; ``evaluate`` mirrors the neural trainer's."""

    estimator: Any
    """The fitted scikit-learn estimator."""
    scaler: Any
    """The fitted ``StandardScaler`` of the training rows (None: raw features)."""
    params: dict[str, float]
    """The grid point (hyper-parameter -> value) it was fitted with."""

    def probabilities(self, data: FusionData, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), C)`` class probabilities over ``data.classes`` (0 for classes the fit never saw)."""
        x = design_matrix(data, rows)
        x = self.scaler.transform(x) if self.scaler is not None else x
        out = np.zeros((len(rows), len(data.classes)))
        seen = np.asarray(self.estimator.classes_, dtype=np.int64)
        if hasattr(self.estimator, "predict_proba") and not hasattr(self.estimator, "support_"):
            out[:, seen] = self.estimator.predict_proba(x)
            return out
        scores = self.estimator.decision_function(x)
        if scores.ndim == 1:  # two classes: sklearn returns the positive class's margin only
            scores = np.stack([-scores, scores], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        out[:, seen] = exp / exp.sum(axis=1, keepdims=True)
        return out

    def evaluate(self, data: FusionData, rows: np.ndarray) -> tuple[dict[str, Any], np.ndarray, float]:
        """Metrics over ``rows``, the ``(n, C)`` probabilities and a loss of 0 (not defined here)."""
        probs = self.probabilities(data, rows)
        return compute_metrics(data.labels[rows], probs.argmax(axis=1), data.classes), probs, 0.0


def estimator(kind: str, params: dict[str, float], n_features: int, seed: int) -> Any:
    """An unfitted scikit-learn estimator: ``kind`` is ``logreg`` or an SVM kernel (``rbf``, ``linear``);
    ``params["gamma"]`` is a multiple of ``1 / n_features`` (scikit-learn's "scale" on z-scored inputs)."""
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=params["C"], class_weight="balanced", max_iter=5000, random_state=seed)
    from sklearn.svm import SVC

    gamma = params.get("gamma", 1.0) / max(n_features, 1)
    return SVC(
        kernel=kind,
        C=params["C"],
        gamma=gamma,
        class_weight="balanced",
        break_ties=True,
        decision_function_shape="ovr",
        random_state=seed,
    )


def estimator_kind(config: Any) -> str:
    """``logreg`` for a logistic-regression config, else the SVM's kernel."""
    return str(getattr(config, "kernel", "logreg"))


def grid(config: Any) -> list[dict[str, float]]:
    """Every hyper-parameter point of a classic head config (``C`` x ``gamma`` where it has one)."""
    axes = {"C": tuple(config.C)}
    if estimator_kind(config) == "rbf":
        axes["gamma"] = tuple(config.gamma)
    if any(not values for values in axes.values()):
        raise UserError(f"head grid {axes} has an empty axis")
    return [dict(zip(axes, point, strict=True)) for point in itertools.product(*axes.values())]


@dataclass
class ClassicSelection:
    """The validation-chosen grid point of one fold and seed (the test rows untouched)."""

    predictor: ClassicPredictor
    """The estimator of the chosen grid point, fitted on the training rows."""
    validation: dict[str, Any]
    """Its validation metrics."""
    history: list[dict[str, float]]
    """One entry per grid point: its parameters and validation score."""
    score: float
    """The validation ``train.select`` metric of the chosen point."""
    seconds: float
    """Wall time of the search."""
    refitted: ClassicPredictor | None = None
    """The chosen point refitted on train + validation, when the search was asked to do it at once
    (a worker process of ``ser.fusion.classic_pool``); else the refit runs when the member is tested."""


def select_classic(
    data: FusionData, rows: dict[str, np.ndarray], *, config: Any, normalize: bool, select: str, seed: int
) -> ClassicSelection:
    """Fit every grid point on ``rows["train"]``, keep the best on ``rows["validation"]`` (see module doc)."""
    start = time.perf_counter()
    kind = estimator_kind(config)
    x_train = design_matrix(data, rows["train"])
    scaler = fit_scaler(x_train, normalize)
    x_train = scaler.transform(x_train) if scaler is not None else x_train
    if x_train.shape[1] == 0:
        raise UserError("the inputs have no feature columns")
    y_train = data.labels[rows["train"]]
    if len(np.unique(y_train)) < 2:
        raise UserError("a fold's training rows hold fewer than two classes; a classifier cannot be fitted")
    best: tuple[float, ClassicPredictor, dict[str, Any]] | None = None
    history: list[dict[str, float]] = []
    with blas_threads(blas_threads_for(problem_size(x_train, data))):
        for params in grid(config):
            fitted = estimator(kind, params, x_train.shape[1], seed).fit(x_train, y_train)
            predictor = ClassicPredictor(fitted, scaler, params)
            metrics, _, _ = predictor.evaluate(data, rows["validation"])
            history.append({**params, f"val_{select}": metrics[select]})
            if best is None or metrics[select] > best[0]:
                best = (metrics[select], predictor, metrics)
            progress.current().advance()
    assert best is not None
    logger.info(
        "%s: chose %s on validation (%s %.4f) from %d grid points", kind, best[1].params, select, best[0], len(history)
    )
    return ClassicSelection(best[1], best[2], history, best[0], time.perf_counter() - start)


def refit_classic(
    data: FusionData, rows: np.ndarray, *, config: Any, params: dict[str, float], normalize: bool, seed: int
) -> ClassicPredictor:
    """The chosen grid point fitted again on ``rows`` (train + validation), scaling refitted too."""
    kind = estimator_kind(config)
    x = design_matrix(data, rows)
    scaler = fit_scaler(x, normalize)
    x = scaler.transform(x) if scaler is not None else x
    with blas_threads(blas_threads_for(problem_size(x, data))):
        fitted = estimator(kind, params, x.shape[1], seed).fit(x, data.labels[rows])
    return ClassicPredictor(fitted, scaler, params)


def problem_size(x: np.ndarray, data: FusionData) -> float:
    """Multiply-adds of one product of the rows ``x`` ``(N, D)`` with a weight matrix ``(D, C)``: what
    sizes the BLAS threads of a classic fit ([`ser.threads.blas_threads_for`][ser.threads.blas_threads_for])."""
    return float(x.shape[0] * x.shape[1] * len(data.classes))
