"""The layer table of a sweep: per probe, test UA mean ± std, its 95 % interval, pooled UA, WA, and the
paired comparison with the best layer, read back from the probes' run directories.

The statistics are those of ``ser report`` ([`ser.ablate.compare`][ser.ablate.compare]): the paired unit is
the fold (the mean over its seeds), or the seed where the protocol has a single fold. The **95 % interval**
of a probe's UA is the paired-bootstrap interval of its mean over those same units (the comparison of the
probe's scores with zero), so the band of ``probe.png`` and the comparison column rest on one resampling.
The **best layer** is the layer probe (not the learned mix) with the highest mean UA; every other probe,
the learned mix included, is compared with it: mean difference, 95 % bootstrap interval, Wilcoxon p and
verdict (better / worse / no clear difference).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser.ablate.compare import Comparison, paired_comparison
from ser.ablate.tables import Score, percent, plain_text, score_of

MD_COLUMNS = (
    "layer",
    "UA (mean ± std)",
    "UA 95 % interval",
    "pooled UA",
    "WA",
    "folds × seeds",
    "Δ UA vs best layer [95 % interval]",
    "Wilcoxon p",
    "verdict",
)
CSV_COLUMNS = (
    "layer",
    "ua_mean",
    "ua_std",
    "ua_low",
    "ua_high",
    "pooled_ua",
    "wa_mean",
    "wa_std",
    "n_folds",
    "n_seeds",
    "diff_vs_best",
    "diff_low",
    "diff_high",
    "wilcoxon_p",
    "verdict",
    "run_dir",
)
BEST = "best layer"


@dataclass
class ProbeRow:
    """One probe's results (fractions in [0, 1])."""

    layer: str
    """A layer number or ``weighted``."""
    run_dir: Path
    """The probe's run directory."""
    ua: Score
    """Test UA, mean ± std over the runs ``ser fit`` aggregates (folds x seeds; folds for classic heads)."""
    pooled_ua: Score
    """UA of all folds' test predictions pooled, mean ± std over seeds."""
    wa: Score
    """Test WA, mean ± std as for ``ua``."""
    n_folds: int
    """Folds the probe ran."""
    n_seeds: int
    """Seeds the probe ran."""
    scores: dict[tuple[str, int], float]
    """(fold, seed) -> test UA: the paired units' source."""
    interval: Comparison | None = None
    """The probe's UA against zero: the bootstrap interval of its mean over the paired units (None with one unit)."""
    versus_best: Comparison | None = None
    """The paired comparison with the best layer (None for the best layer itself, or with one unit)."""
    layer_weights: list[list[float]] = field(default_factory=list)
    """The learned softmax layer weights, one list per run (the learned-mix probe only)."""


def read_row(layer: str, run_dir: Path, modality: str) -> ProbeRow:
    """A probe's row from its run directory's ``metrics.json``."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    runs = metrics["runs"]
    scores = {(str(run["fold"]), int(run["seed"])): float(run["test"]["ua"]) for run in runs}
    weights = [list(map(float, run["layer_weights"][modality])) for run in runs if run.get("layer_weights", {})]
    return ProbeRow(
        layer=layer,
        run_dir=run_dir,
        ua=score_of(metrics["test"]["ua"]),
        pooled_ua=score_of(metrics["test_pooled"]["ua"]),
        wa=score_of(metrics["test"]["wa"]),
        n_folds=len({fold for fold, _ in scores}),
        n_seeds=len({seed for _, seed in scores}),
        scores=scores,
        interval=paired_comparison(scores, dict.fromkeys(scores, 0.0)),
        layer_weights=[w for w in weights if w],
    )


def probe_rows(layers: list[str], run_dirs: list[Path], modality: str) -> list[ProbeRow]:
    """Every probe's row with its comparison with the best layer probe filled in."""
    rows = [read_row(layer, run_dir, modality) for layer, run_dir in zip(layers, run_dirs, strict=True)]
    best = best_row(rows)
    for row in rows:
        if best is not None and row is not best:
            row.versus_best = paired_comparison(row.scores, best.scores)
    return rows


def best_row(rows: list[ProbeRow]) -> ProbeRow | None:
    """The layer probe (a number, not the learned mix) with the highest mean UA; the first on a tie."""
    layered = [row for row in rows if row.layer.isdigit()]
    return max(layered, key=lambda row: row.ua.mean) if layered else None


def _interval_text(comparison: Comparison | None) -> str:
    return "—" if comparison is None else f"[{percent(comparison.low)}, {percent(comparison.high)}]"


def _comparison_cells(row: ProbeRow, best: ProbeRow | None) -> tuple[str, str, str]:
    """(Δ with interval, p, verdict) of a row against the best layer."""
    if row is best:
        return "—", "—", BEST
    c = row.versus_best
    if c is None:
        return "—", "—", "fewer than two paired units"
    sign = "+" if c.mean_difference >= 0 else ""
    return (
        f"{sign}{percent(c.mean_difference)} {_interval_text(c)} ({c.units_text()})",
        f"{c.p_value:.3g}",
        c.verdict,
    )


def markdown_table(rows: list[ProbeRow]) -> str:
    """The table as Markdown (percentages), one line per probe."""
    best = best_row(rows)
    lines = ["| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    for row in rows:
        diff, p, verdict = _comparison_cells(row, best)
        cells = (
            row.layer,
            plain_text(row.ua),
            _interval_text(row.interval),
            plain_text(row.pooled_ua),
            plain_text(row.wa),
            f"{row.n_folds} × {row.n_seeds}",
            diff,
            p,
            verdict,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[ProbeRow]) -> str:
    """The table as CSV (fractions, full precision; empty cells where a value does not exist)."""
    best = best_row(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        c = row.versus_best
        record: dict[str, Any] = {
            "layer": row.layer,
            "ua_mean": row.ua.mean,
            "ua_std": row.ua.std,
            "ua_low": row.interval.low if row.interval else None,
            "ua_high": row.interval.high if row.interval else None,
            "pooled_ua": row.pooled_ua.mean,
            "wa_mean": row.wa.mean,
            "wa_std": row.wa.std,
            "n_folds": row.n_folds,
            "n_seeds": row.n_seeds,
            "diff_vs_best": c.mean_difference if c else None,
            "diff_low": c.low if c else None,
            "diff_high": c.high if c else None,
            "wilcoxon_p": c.p_value if c else None,
            "verdict": _comparison_cells(row, best)[2],
            "run_dir": row.run_dir.name,
        }
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue()
