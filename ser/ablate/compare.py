"""Is a gain real? Paired comparison of two cells over the (fold, seed) runs they share.

Two cells of one grid are evaluated on the same folds with the same seeds, so their per-run UAs are
paired: the fold's speakers make both easy or both hard. The difference ``d_i = UA_cell(i) -
UA_best(i)`` over the shared runs is summarised by

* its mean and a 95 % paired-bootstrap interval (10 000 resamples of the runs with replacement,
  seeded: the same report gives the same interval), and
* the Wilcoxon signed-rank test's two-sided p-value (scipy; 1.0 when every difference is 0).

A cell whose interval contains 0 is *not distinguishable from the best*: the report marks it
instead of ranking it below. With few runs (4 folds x 2 seeds) the interval is wide, and that is
the honest answer. Runs of one fold with several seeds are not independent draws of the test
speakers, so the interval describes this protocol's folds, not a new population of speakers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Comparison:
    """A cell against a reference cell over their shared runs (fractions, not percent)."""

    n_pairs: int
    mean_difference: float
    """Mean of cell - reference over the shared runs."""
    low: float
    high: float
    """95 % paired-bootstrap interval of the mean difference."""
    p_value: float
    """Wilcoxon signed-rank, two-sided."""

    @property
    def distinguishable(self) -> bool:
        """False when the interval contains 0 (the difference may be noise)."""
        return not self.low <= 0.0 <= self.high


def paired_comparison(cell: dict[tuple[str, int], float], reference: dict[tuple[str, int], float]) -> Comparison | None:
    """Compare ``cell`` with ``reference`` (each: (fold, seed) -> metric) over the runs both have;
    None when fewer than two runs are shared."""
    shared = sorted(set(cell) & set(reference))
    if len(shared) < 2:
        return None
    differences = np.array([cell[key] - reference[key] for key in shared], dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = differences[rng.integers(0, len(differences), size=(BOOTSTRAP_RESAMPLES, len(differences)))]
    low, high = np.percentile(resampled.mean(axis=1), [2.5, 97.5])
    return Comparison(
        n_pairs=len(shared),
        mean_difference=float(differences.mean()),
        low=float(low),
        high=float(high),
        p_value=wilcoxon_p(differences),
    )


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1.0 when all are 0)."""
    from scipy.stats import wilcoxon

    if not np.any(differences != 0):
        return 1.0
    return float(wilcoxon(differences, zero_method="wilcox").pvalue)
