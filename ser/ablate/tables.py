"""The results table of one report section, before it is written as Markdown (``report.md``) or LaTeX
(``report.tex``): both formats show the same rows, values and marks.

Rules shared by both formats:

* a score is a percentage with `DECIMALS` decimals, ``mean ± std`` over the values it
  summarises; with fewer than two values there is no spread, so no ``±`` is printed (never ``± 0.00``
  for a single run);
* **bold**: the best mean of a metric column, and every mean equal to it at the printed precision
  (two cells printing the same number are both bold);
* **≈** (tie): not bold, but the paired comparison with the bold cell on that metric
  (``ser.ablate.compare``) finds no clear difference: its 95 % interval contains 0 or its Wilcoxon
  p is at least 0.05. A cell that shares fewer than two paired units with the best gets no mark;
* `NOT_APPLICABLE` (``—``) in a config column: the setting does not apply to that cell's head
  (``train.*`` options that classic heads do not read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ser.ablate.compare import Comparison

DECIMALS = 2
NOT_APPLICABLE = "—"


@dataclass(frozen=True)
class Score:
    """One metric of one cell (fractions in [0, 1]; shown as percent)."""

    mean: float
    """Mean of the summarised values."""
    std: float | None = None
    """Sample std of the summarised values; None when there are fewer than two (nothing to show)."""
    bold: bool = False
    """The best mean of its metric column (or equal to it at the printed precision)."""
    tie: bool = False
    """No clear difference from the bold cell of its column (shown with ≈)."""

    @property
    def number(self) -> str:
        """The mean in percent at the printed precision (``85.42``)."""
        return percent(self.mean)

    @property
    def spread(self) -> str | None:
        """The std in percent at the printed precision, or None when there is no spread to show."""
        return None if self.std is None else percent(self.std)


def percent(fraction: float) -> str:
    return f"{100 * fraction:.{DECIMALS}f}"


def score_of(entry: dict[str, Any], *, spread: bool = True) -> Score:
    """A [`Score`][ser.ablate.tables.Score] from an ``aggregate`` entry (``mean``, ``std``, ``values``);
    ``spread=False`` (or a single value) leaves the ± out."""
    values = entry.get("values") or [entry["mean"]]
    std = float(entry["std"]) if spread and len(values) >= 2 else None
    return Score(mean=float(entry["mean"]), std=std)


def plain_text(score: Score, pm: str = " ± ") -> str:
    """``85.42 ± 4.17`` (or ``85.42`` without a spread), marks left out."""
    return score.number if score.spread is None else f"{score.number}{pm}{score.spread}"


def mark(scores: dict[str, Score], best: str, comparisons: dict[str, Comparison | None]) -> dict[str, Score]:
    """``scores`` (cell -> score of one metric) with the bold and tie marks set (module docstring):
    ``best`` is the cell with the highest mean, ``comparisons`` each cell's paired comparison with it."""
    top = scores[best].number
    out = {}
    for name, score in scores.items():
        bold = math.isfinite(score.mean) and score.number == top  # a NaN is never the best
        comparison = comparisons.get(name)
        tie = not bold and comparison is not None and not comparison.distinguishable
        out[name] = Score(score.mean, score.std, bold=bold, tie=tie)
    return out


@dataclass
class Row:
    """One cell of a section table."""

    name: str
    """The cell's name: its (first) run directory, relative to the report's runs folder."""
    values: list[str]
    """Display text per config column (`NOT_APPLICABLE` where the setting does not apply)."""
    n_folds: int
    """Folds the cell's runs cover."""
    n_seeds: int
    """Training seeds the cell's runs cover."""
    n_runs: int
    """Runs (fold x seed) pooled into the cell."""
    classic: bool = False
    """A classic (scikit-learn) head: its scores summarise one value per fold (its seeds repeat one fit)."""
    scores: dict[str, Score] = field(default_factory=dict)
    """Metric -> score (mean ± std over the cell's runs, marked)."""


@dataclass
class Table:
    """One section (protocol card) of a report."""

    section: str
    """``corpus / protocol / label set``: the section's title."""
    protocol: str
    """One sentence describing the protocol card (folds, validation, utterances)."""
    columns: list[str]
    """Config keys shown (``fusion``, ``recipe``, then the keys that differ between cells)."""
    metrics: dict[str, str]
    """Metric key -> column title, in column order."""
    rows: list[Row]
    """One row per cell."""
    pair_units: list[str] = field(default_factory=list)
    """What the ≈ comparisons paired (``fold`` and/or ``seed``), for the caption."""


@dataclass
class MatrixCell:
    """One (training corpora, test corpus) entry of a cross-corpus matrix."""

    ua: float
    """UA mean over the entry's folds (each fold's mean over its seeds)."""
    n_rows: int
    """Test rows of the entry (summed over its folds: the diagonal's k folds test disjoint parts of a corpus)."""
    n_folds: int
    """Folds pooled into the entry (1 across corpora; k on the diagonal)."""


@dataclass
class Matrix:
    """A cross-corpus matrix: rows = training corpora (joined with ``+``), columns = test corpus."""

    train: list[str]
    """Row names, in first-seen fold order."""
    test: list[str]
    """Column names, in first-seen fold order."""
    cells: dict[tuple[str, str], MatrixCell]
    """(row, column) -> its entry; pairs without folds are absent."""

    def diagonal(self, train: str, test: str) -> bool:
        """True for a within-corpus entry (trained and tested on the same corpus)."""
        return train == test

    def markdown(self) -> list[str]:
        """The matrix as Markdown table lines: ``UA % (rows, folds)`` per entry, ``-`` where none ran."""
        lines = [
            "| train / test | " + " | ".join(self.test) + " |",
            "|---|" + "---:|" * len(self.test),
        ]
        for row in self.train:
            entries = []
            for column in self.test:
                entry = self.cells.get((row, column))
                entries.append(
                    "-" if entry is None else f"{percent(entry.ua)} ({entry.n_rows} rows, {entry.n_folds} folds)"
                )
            lines.append(f"| {row} | " + " | ".join(entries) + " |")
        return lines

    def csv_rows(self) -> tuple[list[str], list[dict[str, Any]]]:
        """Columns and one row per entry (UA as a fraction, as in the other CSV files)."""
        columns = ["train", "test", "ua", "n_test_rows", "n_folds", "within_corpus"]
        rows = [
            {
                "train": train,
                "test": test,
                "ua": f"{entry.ua:.6f}",
                "n_test_rows": entry.n_rows,
                "n_folds": entry.n_folds,
                "within_corpus": self.diagonal(train, test),
            }
            for (train, test), entry in self.cells.items()
        ]
        return columns, rows
