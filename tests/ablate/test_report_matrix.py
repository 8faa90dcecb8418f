"""``ser report`` writes a cross-corpus matrix for a run whose protocol card names each fold's training corpora
and test corpus (``protocol_card.cells``): the CSV, the Markdown table, the LaTeX table and the heatmap, with the
UA mean per entry (the diagonal averaging its within-corpus folds) and its test rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ser.ablate.figures import matrix_figure
from ser.ablate.report import collect, cross_corpus_matrix, validate_record, write_report
from tests.figure_bounds import overlapping_tick_labels, texts_outside

CLASSES = ["angry", "happy", "neutral", "sad"]
CELLS = {
    "ravdess-to-emodb": {"train": ["ravdess"], "test": "emodb"},
    "emodb-to-ravdess": {"train": ["emodb"], "test": "ravdess"},
    "ravdess-to-ravdess-1": {"train": ["ravdess"], "test": "ravdess"},
    "ravdess-to-ravdess-2": {"train": ["ravdess"], "test": "ravdess"},
    "emodb-to-emodb-1": {"train": ["emodb"], "test": "emodb"},
    "emodb-to-emodb-2": {"train": ["emodb"], "test": "emodb"},
}
# fold -> (UA of seed 0, UA of seed 1, test rows)
UA = {
    "ravdess-to-emodb": (0.40, 0.44, 120),
    "emodb-to-ravdess": (0.30, 0.34, 200),
    "ravdess-to-ravdess-1": (0.60, 0.62, 100),
    "ravdess-to-ravdess-2": (0.70, 0.72, 100),
    "emodb-to-emodb-1": (0.80, 0.80, 70),
    "emodb-to-emodb-2": (0.90, 0.86, 50),
}


def _confusion(rows: int) -> list[list[int]]:
    """A 4 x 4 count matrix of ``rows`` rows (all on the diagonal but one per class)."""
    share = rows // 4
    confusion = [[0] * 4 for _ in range(4)]
    for k in range(4):
        confusion[k][k] = share - 1 + (rows - 4 * share if k == 0 else 0)
        confusion[k][(k + 1) % 4] = 1
    return confusion


def _test(ua: float, rows: int, with_n: bool) -> dict[str, Any]:
    test: dict[str, Any] = {"ua": ua, "wa": ua, "macro_f1": ua, "weighted_f1": ua, "confusion": _confusion(rows)}
    if with_n:
        test["n"] = rows
    return test


def _metrics() -> dict[str, Any]:
    runs = [
        {"fold": fold, "seed": seed, "test": _test(values[seed], values[2], with_n=fold.startswith("ravdess"))}
        for fold, values in UA.items()
        for seed in (0, 1)
    ]
    card = {"corpus": "ravdess+emodb", "protocol": "cross-corpus-matrix", "cells": CELLS}
    return {"classes": CLASSES, "label_set": "shared4", "protocol_card": card, "runs": runs}


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "egemaps-logreg"
    run.mkdir(parents=True)
    config = {"config": {"fusion": "logreg", "protocol": "cross-corpus-matrix", "seeds": [0, 1]}}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (run / "metrics.json").write_text(json.dumps(_metrics()), encoding="utf-8")
    return tmp_path / "runs"


EXPECTED = {  # (train, test) -> (UA %, test rows, folds)
    ("ravdess", "emodb"): ("42.00", 120, 1),
    ("emodb", "ravdess"): ("32.00", 200, 1),
    ("ravdess", "ravdess"): ("66.00", 200, 2),  # mean of 0.61 and 0.71
    ("emodb", "emodb"): ("84.00", 120, 2),  # mean of 0.80 and 0.88
}


def test_the_crafted_record_is_valid() -> None:
    validate_record(_metrics(), {"config": {}})


def test_matrix_numbers(runs_dir: Path) -> None:
    (cell,) = collect(runs_dir)
    matrix = cross_corpus_matrix(cell)
    assert matrix is not None
    assert matrix.train == ["ravdess", "emodb"] and matrix.test == ["emodb", "ravdess"]
    got = {pair: (f"{100 * e.ua:.2f}", e.n_rows, e.n_folds) for pair, e in matrix.cells.items()}
    assert got == EXPECTED


def test_report_writes_csv_markdown_latex_and_heatmap(runs_dir: Path, tmp_path: Path) -> None:
    out = write_report(runs_dir, tmp_path / "report")
    with open(out / "matrix-egemaps-logreg.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {
        (r["train"], r["test"]): (f"{100 * float(r['ua']):.2f}", int(r["n_test_rows"]), int(r["n_folds"])) for r in rows
    } == EXPECTED
    assert {(r["train"], r["test"]) for r in rows if r["within_corpus"] == "True"} == {
        ("ravdess", "ravdess"),
        ("emodb", "emodb"),
    }
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "## Cross-corpus matrix: egemaps-logreg" in text
    assert "| train / test | emodb | ravdess |" in text
    assert "| ravdess | 42.00 (120 rows, 1 folds) | 66.00 (200 rows, 2 folds) |" in text
    assert "| emodb | 84.00 (120 rows, 2 folds) | 32.00 (200 rows, 1 folds) |" in text
    tex = (out / "report.tex").read_text(encoding="utf-8")
    assert r"ravdess & 42.00 (120) & \textit{66.00 (200)} \\" in tex
    assert (out / "matrix-egemaps-logreg.png").stat().st_size > 0


def test_heatmap_cells_fit_and_show_ua_and_rows(runs_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    (cell,) = collect(runs_dir)
    matrix = cross_corpus_matrix(cell)
    assert matrix is not None
    fig = matrix_figure(cell.name, matrix)
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["42.0\n120 rows", "32.0\n200 rows", "66.0\n200 rows", "84.0\n120 rows"])
    assert len([p for p in ax.patches if not p.get_fill()]) == 2  # the diagonal, outlined
    assert fig.axes[1].get_ylabel() == "UA (%)"  # the colour bar
    assert texts_outside(fig) == []
    assert overlapping_tick_labels(ax, "x") == [] and overlapping_tick_labels(ax, "y") == []


def test_a_run_without_cells_writes_no_matrix(runs_dir: Path, tmp_path: Path) -> None:
    path = runs_dir / "egemaps-logreg" / "metrics.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    del record["protocol_card"]["cells"]
    path.write_text(json.dumps(record), encoding="utf-8")
    out = write_report(runs_dir, tmp_path / "report", plots=False)
    assert not list(out.glob("matrix-*")) and "Cross-corpus" not in (out / "report.md").read_text(encoding="utf-8")
