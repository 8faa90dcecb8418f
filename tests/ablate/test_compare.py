"""Paired comparison of cells: the paired units (folds, seeds of a single fold), the bootstrap interval,
the Wilcoxon signed-rank p and the verdict that needs both."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from ser.ablate.compare import Comparison, paired_comparison, paired_differences, wilcoxon_p


def scores(values: list[float]) -> dict[tuple[str, int], float]:
    """Fold ``f{i // 2}``, seed ``i % 2``: two seeds per fold."""
    return {(f"f{i // 2}", i % 2): v for i, v in enumerate(values)}


def one_seed(values: list[float]) -> dict[tuple[str, int], float]:
    return {(f"f{i}", 0): v for i, v in enumerate(values)}


def test_the_paired_unit_is_the_fold_with_its_shared_seeds_averaged() -> None:
    cell = {("a", 0): 0.50, ("a", 1): 0.70, ("b", 0): 0.40, ("b", 1): 0.44, ("c", 0): 0.9}
    reference = {("a", 0): 0.40, ("a", 1): 0.40, ("b", 0): 0.50, ("b", 2): 0.1, ("z", 0): 0.9}
    unit, differences = paired_differences(cell, reference)
    # fold a: seeds 0 and 1 shared -> (0.10 + 0.30) / 2; fold b: only seed 0 shared -> -0.10
    assert unit == "fold" and differences == pytest.approx([0.20, -0.10])
    comparison = paired_comparison(cell, reference)
    assert comparison is not None and comparison.n_pairs == 2 and comparison.unit == "fold"
    assert comparison.mean_difference == pytest.approx(0.05)
    assert comparison.units_text() == "2 folds"


def test_one_shared_fold_pairs_its_seeds() -> None:
    cell = {("test", 0): 0.61, ("test", 1): 0.63, ("test", 2): 0.60}
    reference = {("test", 0): 0.58, ("test", 1): 0.59, ("test", 2): 0.60, ("test", 3): 0.9}
    unit, differences = paired_differences(cell, reference)
    assert unit == "seed" and differences == pytest.approx([0.03, 0.04, 0.0])
    comparison = paired_comparison(cell, reference)
    assert comparison is not None and comparison.units_text() == "3 seeds"
    # the zero difference is dropped by the signed-rank test: two positive differences, p = 2 / 2**2
    assert comparison.p_value == pytest.approx(0.5)


def test_an_interval_that_excludes_zero_over_four_folds_is_no_clear_difference() -> None:
    """The report's old failure: every fold lower, bootstrap interval below 0, but the Wilcoxon test
    over n = 4 folds cannot reach p < 0.05 (its smallest two-sided p is 2 / 2**4 = 0.125)."""
    best = one_seed([0.62, 0.55, 0.71, 0.48])
    cell = one_seed([0.50, 0.47, 0.70, 0.45])  # differences -12, -8, -1, -3 points
    comparison = paired_comparison(cell, best)
    assert comparison is not None
    assert comparison.n_pairs == 4 and comparison.unit == "fold"
    assert comparison.high < 0 and comparison.interval_excludes_zero
    assert comparison.p_value == pytest.approx(0.125)
    assert not comparison.distinguishable and comparison.verdict == "no clear difference"
    assert comparison.mean_difference == pytest.approx(-0.06)


def test_better_or_worse_needs_the_interval_and_p_below_005() -> None:
    best = one_seed([0.62, 0.55, 0.71, 0.48, 0.66, 0.59])
    worse = one_seed([0.50, 0.47, 0.70, 0.45, 0.60, 0.57])  # six lower folds: p = 2 / 2**6
    comparison = paired_comparison(worse, best)
    assert comparison is not None and comparison.p_value == pytest.approx(0.03125)
    assert comparison.interval_excludes_zero and comparison.verdict == "worse"
    better = paired_comparison(best, worse)
    assert better is not None and better.verdict == "better"
    # p < 0.05 but the interval reaches 0: still no clear difference
    edge = Comparison(n_pairs=8, unit="fold", mean_difference=-0.01, low=-0.02, high=0.0, p_value=0.01)
    assert edge.verdict == "no clear difference"


def test_a_consistent_gain_is_distinguishable_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 0.6, size=20)
    better = paired_comparison(scores(list(base + 0.05 + rng.normal(0, 0.01, 20))), scores(list(base)))
    assert better is not None and better.distinguishable and better.n_pairs == 10  # 10 folds x 2 seeds
    assert 0.04 < better.low < better.mean_difference < better.high < 0.06
    assert better.p_value == pytest.approx(2 / 2**10)  # every fold gains: the exact test's smallest p
    noise = paired_comparison(scores(list(base + rng.normal(0, 0.05, 20))), scores(list(base)))
    assert noise is not None and not noise.distinguishable and noise.low < 0 < noise.high


def test_only_shared_runs_are_paired_and_identical_cells_tie() -> None:
    cell = {("a", 0): 0.5, ("b", 0): 0.6, ("c", 0): 0.7}
    reference = {("a", 0): 0.4, ("b", 0): 0.5, ("z", 0): 0.9}
    comparison = paired_comparison(cell, reference)
    assert comparison is not None and comparison.n_pairs == 2
    assert comparison.mean_difference == pytest.approx(0.1)
    same = paired_comparison(cell, dict(cell))
    assert same is not None and same.low == same.high == 0 and not same.distinguishable and same.p_value == 1.0
    assert paired_comparison({("a", 0): 1.0}, {("a", 0): 0.0}) is None  # one pair: nothing to say


def test_seeds_that_cancel_within_a_fold_give_an_exact_zero() -> None:
    cell = {("a", 0): 0.7, ("a", 1): 0.2, ("b", 0): 0.5}
    reference = {("a", 0): 0.1, ("a", 1): 0.8, ("b", 0): 0.5}  # in floats 0.6 - 0.6 is -1.1e-16
    _, differences = paired_differences(cell, reference)
    assert list(differences) == [0.0, 0.0]
    comparison = paired_comparison(cell, reference)
    assert comparison is not None and comparison.p_value == 1.0


def test_wilcoxon_is_scipys() -> None:
    d = np.array([0.1, -0.02, 0.05, 0.07, 0.03, -0.01])
    assert wilcoxon_p(d) == pytest.approx(wilcoxon(d).pvalue)
    assert wilcoxon_p(np.zeros(4)) == 1.0


def test_the_interval_is_reproducible() -> None:
    a, b = scores([0.5, 0.6, 0.55, 0.58]), scores([0.52, 0.57, 0.5, 0.6])
    assert paired_comparison(a, b) == paired_comparison(a, b)
