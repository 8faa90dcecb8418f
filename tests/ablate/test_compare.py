"""Paired comparison of cells: bootstrap interval of the UA difference and the Wilcoxon signed-rank p."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from ser.ablate.compare import paired_comparison, wilcoxon_p


def scores(values: list[float]) -> dict[tuple[str, int], float]:
    return {(f"f{i // 2}", i % 2): v for i, v in enumerate(values)}


def test_a_consistent_gain_is_distinguishable_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 0.6, size=20)
    better = paired_comparison(scores(list(base + 0.05 + rng.normal(0, 0.01, 20))), scores(list(base)))
    assert better is not None and better.distinguishable
    assert 0.04 < better.low < better.mean_difference < better.high < 0.06
    assert better.p_value < 0.001
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


def test_wilcoxon_is_scipys() -> None:
    d = np.array([0.1, -0.02, 0.05, 0.07, 0.03, -0.01])
    assert wilcoxon_p(d) == pytest.approx(wilcoxon(d).pvalue)
    assert wilcoxon_p(np.zeros(4)) == 1.0


def test_the_interval_is_reproducible() -> None:
    a, b = scores([0.5, 0.6, 0.55, 0.58]), scores([0.52, 0.57, 0.5, 0.6])
    assert paired_comparison(a, b) == paired_comparison(a, b)
