"""``ser report``: cells pool fold x seed runs from any run directories, numbers equal the aggregated
metrics.json files, sections per protocol, best marked, plots and the EmoBox export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ser.ablate.grid import expand, load_grid
from ser.ablate.job import run_job
from ser.ablate.report import collect, sections, write_report
from ser.errors import UserError
from ser.fusion.run import run_fit
from tests.fakes.caches import write_grid


@pytest.fixture
def runs(corpus: dict[str, Path]) -> dict[str, object]:
    """Cell A (lr 0.01) as two one-seed ablate jobs AND one two-seed `ser fit` run (the same fold x
    seed runs twice over); cell B (weighted layers) one seed; cell C under another protocol. The
    sequential engine: with dropout, a stacked member's masks depend on the members it trains with,
    and this test compares one-seed jobs with a two-seed fit."""
    grid = write_grid(
        corpus,
        zip=[{"train.lr": [0.01, 0.003], "audio:layer": ["1", "weighted"]}],
        seeds=[0, 1],
        base={"train": {"epochs": 4, "patience": 0, "batch_size": 16, "engine": "sequential"}},
    )
    jobs = expand(load_grid(grid))
    for job in jobs[:3]:  # A seed 0, A seed 1, B seed 0
        assert run_job(job.record) == "ran"
    two_seeds = dict(jobs[0].record, seeds=[0, 1])
    from ser.fusion.config import config_from_dict

    both_dir = run_fit(config_from_dict(two_seeds))
    other = dict(jobs[0].record, protocol="speaker-kfold", protocol_options={"k": 2}, folds=None)
    run_fit(config_from_dict(other))
    return {"out": corpus["root"] / "runs", "jobs": jobs, "both_dir": both_dir}


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_cells_pool_runs_once_and_equal_the_aggregated_metrics(runs: dict) -> None:
    cells = collect(runs["out"])
    assert len(cells) == 3
    cell_a = next(c for c in cells if c.config["train"]["lr"] == 0.01 and c.config["protocol"] == "speaker-loso")
    assert len(cell_a.runs) == 4  # 2 folds x 2 seeds, each found twice, counted once
    assert cell_a.seeds() == [0, 1] and cell_a.folds() == ["spk0", "spk1"]
    reference = metrics(runs["both_dir"])["test"]  # ser fit's own mean ± std over the same 4 runs
    summary = cell_a.summary()
    for key in ("ua", "wa", "macro_f1", "weighted_f1"):
        assert summary[key]["mean"] == pytest.approx(reference[key]["mean"], abs=1e-12)
        assert summary[key]["std"] == pytest.approx(reference[key]["std"], abs=1e-12)
    by_hand = [r["test"]["ua"] for job in runs["jobs"][:2] for r in metrics(job.run_dir)["runs"]]
    assert summary["ua"]["mean"] == pytest.approx(np.mean(by_hand))
    assert summary["ua"]["std"] == pytest.approx(np.std(by_hand, ddof=1))
    assert cell_a.confusion().sum() == sum(r["test"]["n"] for r in cell_a.runs)


def test_sections_split_protocols_and_name_the_varying_keys(runs: dict) -> None:
    parts = {s.name: s for s in sections(collect(runs["out"]))}
    assert sorted(parts) == ["ravdess / speaker-kfold / ravdess8", "ravdess / speaker-loso / ravdess8"]
    loso = parts["ravdess / speaker-loso / ravdess8"]
    assert loso.columns == ["fusion", "recipe", "audio", "train.lr"]  # fusion and recipe always
    best = loso.best()
    means = {c.key: c.summary()["ua"]["mean"] for c in loso.cells}
    assert best["ua"] == max(means, key=means.get)


def test_written_report_tables_plots_and_emobox_export(runs: dict, tmp_path: Path) -> None:
    folder = write_report(runs["out"], tmp_path / "report", title="tiny grid")
    md = (folder / "report.md").read_text()
    assert md.startswith("# tiny grid") and md.count("## ravdess") == 2 and md.count("**") >= 8
    rows = list(csv.DictReader((folder / "report.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 3
    cells = {c.cell_id: c for c in collect(runs["out"])}
    for row in rows:
        summary = cells[row["cell"]].summary()
        assert float(row["ua_mean"]) == pytest.approx(summary["ua"]["mean"], abs=1e-6)
        assert float(row["wa_std"]) == pytest.approx(summary["wa"]["std"], abs=1e-6)
        assert f"{100 * summary['ua']['mean']:.2f} ± {100 * summary['ua']['std']:.2f}" in md
    loso_rows = [r for r in rows if "loso" in r["section"]]
    assert sum("ua" in r["best"].split() for r in loso_rows) == 1
    long = list(csv.DictReader((folder / "runs.csv").read_text(encoding="utf-8").splitlines()))
    assert len(long) == sum(len(c.runs) for c in cells.values())
    emobox = json.loads((folder / "emobox.json").read_text())
    for cell_id, record in emobox.items():
        for run in record["runs"]:
            assert set(run) >= {"num", "wa", "ua", "micro_f1", "macro_f1", "confusion"}
            assert run["micro_f1"] == pytest.approx(run["wa"])  # single-label: micro-F1 is the accuracy
        assert record["mean"]["ua"] == pytest.approx(cells[cell_id].summary()["ua"]["mean"])
        lines = (folder / "emobox_predictions" / f"{cell_id}.jsonl").read_text().splitlines()
        assert len(lines) == sum(r["num"] for r in record["runs"])
        assert set(json.loads(lines[0])) == {"key", "pred", "label", "fold", "seed"}
    for cell_id in cells:
        assert (folder / "confusion" / f"{cell_id}.png").stat().st_size > 1000
    assert (folder / "bars_ravdess___speaker-loso___ravdess8.png").stat().st_size > 1000
    # only cell B learned layer weights
    assert (folder / "layer_weights_ravdess___speaker-loso___ravdess8.png").exists()
    assert not (folder / "layer_weights_ravdess___speaker-kfold___ravdess8.png").exists()


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no finished runs"):
        collect(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        collect(tmp_path / "missing")


def test_report_gives_pooled_metrics_and_paired_differences_from_the_best(runs: dict, tmp_path: Path) -> None:
    from ser.ablate.compare import paired_comparison
    from ser.fusion.metrics import metrics_from_confusion

    loso = next(s for s in sections(collect(runs["out"])) if "speaker-loso" in s.name)
    best = next(c for c in loso.cells if c.key == loso.best()["ua"])
    other = next(c for c in loso.cells if c is not best)
    expected = paired_comparison(other.run_scores(), best.run_scores())
    assert loso.comparisons() == {best.key: None, other.key: expected}
    assert expected is not None and expected.n_pairs == len(set(other.run_scores()) & set(best.run_scores()))
    seed0 = np.sum([r["test"]["confusion"] for r in best.runs if r["seed"] == 0], axis=0)
    assert best.pooled()["ua"]["values"][0] == pytest.approx(metrics_from_confusion(seed0, best.classes)["ua"])
    out = write_report(runs["out"], tmp_path / "report", plots=False)
    text = (out / "report.md").read_text()
    assert "ΔUA vs best [95 % CI]" in text and "UA pooled" in text
    verdict = "≈ best" if not expected.distinguishable else ("worse" if expected.mean_difference < 0 else "better?")
    assert f"{100 * expected.mean_difference:+.2f} [{100 * expected.low:+.2f}, {100 * expected.high:+.2f}]" in text
    assert verdict in text
    with open(out / "report.csv", encoding="utf-8") as handle:
        rows = {row["cell"]: row for row in csv.DictReader(handle)}
    assert float(rows[other.cell_id]["ua_diff_vs_best"]) == pytest.approx(expected.mean_difference, abs=1e-6)
    assert rows[best.cell_id]["ua_diff_vs_best"] == "" and float(rows[best.cell_id]["ua_pooled_mean"]) > 0
