"""Is a gain real? Paired comparison of two cells over the folds they share.

Two cells of one grid are evaluated on the same folds with the same seeds, so their scores are
paired: a fold's test speakers make both cells' runs easy or both hard. The **paired unit** is the
fold: for each fold both cells have runs of, the difference ``d_f`` is the mean over the seeds both
ran on that fold of ``score_cell(f, seed) - score_reference(f, seed)``. Seeds of one fold are not
independent draws of test speakers (they retrain on the same rows and test on the same rows), so
counting them as separate pairs would claim more evidence than the folds hold; a classic head's
seeds even repeat one deterministic fit. Only where the cells share a single fold (an ``official``
train/validation/test split) are the seeds the paired units: then the question is whether the
difference exceeds the training noise on that one test set.

The differences over the ``n`` paired units are summarised by

* their mean and a 95 % paired-bootstrap interval (10 000 resamples of the units with replacement,
  seeded: the same report gives the same interval), and
* the Wilcoxon signed-rank test's two-sided p-value (scipy's; 1.0 when every difference is 0).

The verdict is **better** or **worse** only when the interval excludes 0 AND ``p < 0.05``; otherwise
**no clear difference**. The exact Wilcoxon test cannot reach ``p < 0.05`` with 5 or fewer
non-zero differences (its smallest two-sided p is ``2 / 2**n``: 0.125 for 4 folds, 0.0625 for 5),
so a leave-one-session-out IEMOCAP table (5 folds) never calls a difference: that is the honest
answer for 5 test groups, whatever the bootstrap interval says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
"""Significance level of the Wilcoxon test in the verdict (two-sided)."""
NO_CLEAR_DIFFERENCE = "no clear difference"


@dataclass(frozen=True)
class Comparison:
    """A cell against a reference cell over their shared paired units (fractions, not percent)."""

    n_pairs: int
    """Number of paired units (folds, or seeds where the cells share one fold)."""
    unit: str
    """``fold`` or ``seed``: what was paired."""
    mean_difference: float
    """Mean of cell - reference over the paired units."""
    low: float
    """95 % paired-bootstrap interval of the mean difference: lower end."""
    high: float
    """95 % paired-bootstrap interval of the mean difference."""
    p_value: float
    """Wilcoxon signed-rank, two-sided."""

    @property
    def interval_excludes_zero(self) -> bool:
        """True when the interval lies entirely above or below 0."""
        return not self.low <= 0.0 <= self.high

    @property
    def distinguishable(self) -> bool:
        """True only when the interval excludes 0 and the Wilcoxon p is below [`ALPHA`][ser.ablate.compare.ALPHA]."""
        return self.interval_excludes_zero and self.p_value < ALPHA

    @property
    def verdict(self) -> str:
        """``better``, ``worse`` or ``no clear difference`` (the cell against the reference)."""
        if not self.distinguishable:
            return NO_CLEAR_DIFFERENCE
        return "better" if self.mean_difference > 0 else "worse"

    def units_text(self) -> str:
        """``4 folds`` / ``1 fold`` / ``3 seeds``: n with its unit."""
        return f"{self.n_pairs} {self.unit}{'' if self.n_pairs == 1 else 's'}"


def paired_differences(
    cell: dict[tuple[str, int], float], reference: dict[tuple[str, int], float]
) -> tuple[str, np.ndarray]:
    """``(unit, differences)`` of ``cell`` - ``reference`` (each: (fold, seed) -> score) over the runs
    both have: one difference per shared fold (the mean over that fold's shared seeds) when two or
    more folds are shared, else one per shared seed of the single shared fold."""
    shared = sorted(set(cell) & set(reference))
    by_fold: dict[str, list[float]] = {}
    for fold, seed in shared:
        by_fold.setdefault(fold, []).append(cell[(fold, seed)] - reference[(fold, seed)])
    if len(by_fold) >= 2:
        # rounded: seeds whose differences cancel give 0, not a 1e-17 that the Wilcoxon test would rank
        return "fold", np.round([np.mean(values) for values in by_fold.values()], 12)
    return "seed", np.array(next(iter(by_fold.values()), []), dtype=np.float64)


def paired_comparison(cell: dict[tuple[str, int], float], reference: dict[tuple[str, int], float]) -> Comparison | None:
    """Compare ``cell`` with ``reference`` (each: (fold, seed) -> metric) over their shared paired
    units (see the module docstring); None when fewer than two units are shared."""
    unit, differences = paired_differences(cell, reference)
    if len(differences) < 2:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = differences[rng.integers(0, len(differences), size=(BOOTSTRAP_RESAMPLES, len(differences)))]
    low, high = np.percentile(resampled.mean(axis=1), [2.5, 97.5])
    return Comparison(
        n_pairs=len(differences),
        unit=unit,
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
