"""``ser report``: cells pool fold x seed runs from any run directories and are named after them, numbers
equal the aggregated metrics.json files, sections per protocol, best and ties marked, verdicts that need
both the interval and the Wilcoxon p, classic heads without training columns, plots, report.tex and the
EmoBox export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ser.ablate.compare import paired_comparison
from ser.ablate.grid import expand, load_grid
from ser.ablate.job import run_job
from ser.ablate.report import Cell, collect, markdown, run_rows, sections, write_report
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


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


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


def test_a_cell_is_named_after_its_run_directories(runs: dict, tmp_path: Path) -> None:
    cells = collect(runs["out"])
    cell_a = next(c for c in cells if c.config["train"]["lr"] == 0.01 and c.config["protocol"] == "speaker-loso")
    a_dirs = sorted([runs["jobs"][0].run_dir.name, runs["jobs"][1].run_dir.name, runs["both_dir"].name])
    assert sorted(d.name for d in cell_a.run_dirs) == a_dirs and cell_a.name == a_dirs[0]
    cell_b = next(c for c in cells if c.config["train"]["lr"] == 0.003)
    assert cell_b.name == runs["jobs"][2].run_dir.name and len(cell_b.run_dirs) == 1
    assert all((runs["out"] / c.name / "metrics.json").is_file() for c in cells)
    folder = write_report(runs["out"], tmp_path / "report", plots=False)
    rows = {r["cell"]: r for r in read_csv(folder / "report.csv")}
    assert set(rows) == {c.name for c in cells}
    assert sorted(rows[cell_a.name]["run_dirs"].split()) == a_dirs and rows[cell_b.name]["run_dirs"] == cell_b.name
    # runs.csv: each (fold, seed) row names the run directory whose metrics.json holds exactly that run
    for row in read_csv(folder / "runs.csv"):
        held = {(r["fold"], r["seed"]): r["test"]["ua"] for r in metrics(runs["out"] / row["run_dir"])["runs"]}
        assert float(row["ua"]) == pytest.approx(held[(row["fold"], int(row["seed"]))], abs=1e-6)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "## Run directories" in md
    assert f"- `{cell_a.name}`: " + ", ".join(f"`{d.name}`" for d in cell_a.run_dirs) in md
    assert f"- `{cell_b.name}`" not in md  # one directory: its name says it all


def test_counts_of_folds_and_seeds_and_the_seed_list(runs: dict, tmp_path: Path) -> None:
    folder = write_report(runs["out"], tmp_path / "report", plots=False)
    rows = read_csv(folder / "report.csv")
    counts = sorted((r["n_folds"], r["n_seeds"], r["n_runs"], r["seed_list"]) for r in rows)
    assert counts == [("2", "1", "2", "0"), ("2", "1", "2", "0"), ("2", "2", "4", "0 1")]
    assert "seeds" not in rows[0]  # the list has its own unambiguous name
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "| n_folds | n_seeds | n_runs | UA | WA | macro-F1 | weighted-F1 |" in md


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
    rows = read_csv(folder / "report.csv")
    assert len(rows) == 3
    cells = {c.name: c for c in collect(runs["out"])}
    for row in rows:
        summary = cells[row["cell"]].summary()
        assert float(row["ua_mean"]) == pytest.approx(summary["ua"]["mean"], abs=1e-6)
        assert float(row["wa_std"]) == pytest.approx(summary["wa"]["std"], abs=1e-6)
        assert f"{100 * summary['ua']['mean']:.2f} ± {100 * summary['ua']['std']:.2f}" in md
    loso_rows = [r for r in rows if "loso" in r["section"]]
    assert sum("ua" in r["best"].split() for r in loso_rows) >= 1
    long = read_csv(folder / "runs.csv")
    assert len(long) == sum(len(c.runs) for c in cells.values())
    assert all(r["best_epoch"].isdigit() and r["epochs_run"] == "4" for r in long)  # neural heads: epochs
    emobox = json.loads((folder / "emobox.json").read_text())
    assert set(emobox) == set(cells)
    for name, record in emobox.items():
        for run in record["runs"]:
            assert set(run) >= {"num", "wa", "ua", "micro_f1", "macro_f1", "confusion"}
            assert run["micro_f1"] == pytest.approx(run["wa"])  # single-label: micro-F1 is the accuracy
        assert record["mean"]["ua"] == pytest.approx(cells[name].summary()["ua"]["mean"])
        lines = (folder / "emobox_predictions" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == sum(r["num"] for r in record["runs"])
        assert set(json.loads(lines[0])) == {"key", "pred", "label", "fold", "seed"}
    for name in cells:
        assert (folder / "confusion" / f"{name}.png").stat().st_size > 1000
    assert (folder / "bars_ravdess___speaker-loso___ravdess8.png").stat().st_size > 1000
    # only cell B learned layer weights
    assert (folder / "layer_weights_ravdess___speaker-loso___ravdess8.png").exists()
    assert not (folder / "layer_weights_ravdess___speaker-kfold___ravdess8.png").exists()
    tex = (folder / "report.tex").read_text(encoding="utf-8")
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 2 and r"\section*{tiny grid}" in tex
    for name in cells:
        assert "\\texttt{" + name.replace("_", r"\_") + "}" in tex


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no finished runs"):
        collect(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        collect(tmp_path / "missing")


def test_report_gives_pooled_metrics_and_paired_differences_from_the_best(runs: dict, tmp_path: Path) -> None:
    from ser.fusion.metrics import metrics_from_confusion

    loso = next(s for s in sections(collect(runs["out"])) if "speaker-loso" in s.name)
    best = next(c for c in loso.cells if c.key == loso.best()["ua"])
    other = next(c for c in loso.cells if c is not best)
    expected = paired_comparison(other.run_scores(), best.run_scores())
    assert loso.comparisons() == {best.key: None, other.key: expected}
    assert expected is not None and expected.n_pairs == 2 and expected.unit == "fold"  # spk0, spk1
    seed0 = np.sum([r["test"]["confusion"] for r in best.runs if r["seed"] == 0], axis=0)
    assert best.pooled()["ua"]["values"][0] == pytest.approx(metrics_from_confusion(seed0, best.classes)["ua"])
    out = write_report(runs["out"], tmp_path / "report", plots=False)
    text = (out / "report.md").read_text()
    assert "ΔUA vs best [95 % CI] | n | Wilcoxon p | verdict |" in text and "UA pooled" in text
    interval = f"{100 * expected.mean_difference:+.2f} [{100 * expected.low:+.2f}, {100 * expected.high:+.2f}]"
    # two folds: the Wilcoxon p is at least 0.5, so whatever the interval, no clear difference
    assert f"| {interval} | 2 folds | {expected.p_value:.3f} | no clear difference |" in text
    rows = {row["cell"]: row for row in read_csv(out / "report.csv")}
    assert float(rows[other.name]["ua_diff_vs_best"]) == pytest.approx(expected.mean_difference, abs=1e-6)
    assert rows[other.name]["n_pairs"] == "2" and rows[other.name]["pair_unit"] == "fold"
    assert rows[other.name]["verdict"] == "no clear difference" and rows[best.name]["verdict"] == "best"
    assert rows[best.name]["ua_diff_vs_best"] == "" and float(rows[best.name]["ua_pooled_mean"]) > 0
    one_seed = next(c for c in loso.cells if c.seeds() == [0])
    assert rows[one_seed.name]["ua_pooled_std"] == ""  # one seed: no spread over seeds
    pooled = f"{100 * one_seed.pooled()['ua']['mean']:.2f}"
    assert f"| {one_seed.name} | {pooled} | " in text  # ... and no ± after it


# --- synthetic cells: exact numbers for the rules of the tables ---------------------------------------


def synthetic(name: str, fusion: str, ua: dict[tuple[str, int], float], **config: object) -> Cell:
    """A cell of 2-class runs with 10 test rows per class, ``ua`` per (fold, seed) a multiple of 0.1
    (every metric equals it); ``best_epoch`` 3 / ``epochs_run`` 5, or 0 / 0 for a classic head."""
    classic = fusion in ("logreg", "svm")
    runs = []
    for (fold, seed), value in ua.items():
        k = round(10 * value)
        confusion = [[k, 10 - k], [10 - k, k]]
        test = {"ua": value, "wa": value, "macro_f1": value, "weighted_f1": value, "confusion": confusion, "n": 20}
        epochs = {"best_epoch": 0, "epochs_run": 0} if classic else {"best_epoch": 3, "epochs_run": 5}
        runs.append({"fold": fold, "seed": seed, "test": test, **epochs})
    folds = sorted({fold for fold, _ in ua})
    card = {"corpus": "toy", "protocol": "speaker-loso", "folds": folds, "n_utterances": 20 * len(folds)}
    cell = Cell(
        key=name,
        config={"fusion": fusion, "recipe": "ser", **config},
        section="toy / speaker-loso / two",
        classes=["a", "b"],
        card=card,
        runs=runs,
        run_dirs=[Path(name)],
        run_sources=[Path(name)] * len(runs),
    )
    return cell


def per_fold(values: list[float], seeds: tuple[int, ...] = (0,)) -> dict[tuple[str, int], float]:
    return {(f"spk{i}", seed): v for i, v in enumerate(values) for seed in seeds}


def test_four_folds_lower_everywhere_read_no_clear_difference_with_n() -> None:
    best = synthetic("mlp-best", "mlp", per_fold([0.7, 0.6, 0.8, 0.5]), train={"lr": 0.01})
    lower = synthetic("mlp-lower", "mlp", per_fold([0.6, 0.5, 0.7, 0.4]), train={"lr": 0.1})
    section = sections([best, lower])[0]
    comparison = section.comparisons()["mlp-lower"]
    assert comparison is not None and comparison.high < 0  # the interval excludes 0 ...
    assert comparison.p_value == pytest.approx(0.125)  # ... but p over 4 folds cannot be < 0.05
    md = markdown([section], "toy")
    assert "| -10.00 [-10.00, -10.00] | 4 folds | 0.125 | no clear difference |" in md
    assert "| **65.00 ± 12.91** |" in md and "| ≈ 55.00 ± 12.91 |" in md  # ≈: tied with the bold cell
    assert "± 0.00" not in md  # one seed: the pooled column has no ± over seeds
    assert "| mlp-best | 65.00 | 65.00 | 65.00 | 65.00 | best |" in md


def test_six_folds_lower_everywhere_are_worse_and_not_tied() -> None:
    best = synthetic("mlp-best", "mlp", per_fold([0.7, 0.6, 0.8, 0.5, 0.9, 0.6]), train={"lr": 0.01})
    lower = synthetic("mlp-lower", "mlp", per_fold([0.6, 0.5, 0.7, 0.4, 0.6, 0.5]), train={"lr": 0.1})
    section = sections([best, lower])[0]
    md = markdown([section], "toy")
    assert "| 6 folds | 0.031 | worse |" in md
    table = section.table()
    assert [r.scores["ua"].bold for r in table.rows] == [True, False]
    assert [r.scores["ua"].tie for r in table.rows] == [False, False]


def test_a_single_run_has_no_spread_and_one_fold_pairs_seeds() -> None:
    once = synthetic("mlp-once", "mlp", {("test", 0): 0.7})
    seeds = synthetic("mlp-seeds", "mlp", {("test", 0): 0.6, ("test", 1): 0.8, ("test", 2): 0.7}, head={"h": 2})
    section = sections([once, seeds])[0]
    rows = {row.name: row for row in section.table().rows}
    assert rows["mlp-once"].scores["ua"].std is None and rows["mlp-once"].scores["ua"].bold
    assert rows["mlp-seeds"].scores["ua"].std == pytest.approx(0.1)
    md = markdown([section], "toy")
    assert "| **70.00** | **70.00** |" in md and "| **70.00 ± 10.00** |" in md  # equal at 2 decimals: both bold
    assert "| mlp-seeds | 70.00 ± 10.00 |" in md  # pooled: std over the 3 seeds
    assert "| 1 seed | - | too few shared runs |" in md  # one shared (fold, seed): nothing to test


def test_classic_cells_show_no_training_settings_or_epochs() -> None:
    mlp = synthetic("mlp-a", "mlp", per_fold([0.7, 0.6], seeds=(0, 1)), train={"lr": 0.01, "refit": False})
    mlp_b = synthetic("mlp-b", "mlp", per_fold([0.6, 0.6], seeds=(0, 1)), train={"lr": 0.1, "refit": False})
    logreg = synthetic("logreg-a", "logreg", per_fold([0.8, 0.6], seeds=(0, 1)), train={"lr": 0.5, "refit": True})
    assert logreg.classic and not mlp.classic
    assert not logreg.applies("train.lr") and logreg.applies("train.refit") and mlp.applies("train.lr")
    section = sections([mlp, mlp_b, logreg])[0]
    assert section.columns == ["fusion", "recipe", "train.lr", "train.refit"]
    md = markdown([section], "toy")
    assert "| logreg-a | logreg | ser | — | True | 2 | 2 | 4 |" in md
    assert "| mlp-a | mlp | ser | 0.01 | False | 2 | 2 | 4 |" in md
    # a classic head's seeds repeat one fit: ± over its 2 folds (80, 60), not its 4 duplicated runs
    assert logreg.summary()["ua"]["std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert "| **70.00 ± 14.14** |" in md
    assert "| logreg-a | 70.00 | 70.00 | 70.00 | 70.00 | best |" in md  # pooled: no ± over repeated seeds
    _, rows = run_rows([mlp, logreg])
    assert {(r["cell"], r["best_epoch"], r["epochs_run"]) for r in rows} == {("mlp-a", 3, 5), ("logreg-a", "", "")}
    # a column that applies to no cell is dropped: logreg cells that differ only in train.lr
    other = synthetic("logreg-b", "logreg", per_fold([0.8, 0.6], seeds=(0, 1)), train={"lr": 0.01, "refit": True})
    assert sections([logreg, other])[0].columns == ["fusion", "recipe"]


def test_the_classic_train_keys_are_those_ser_fusion_classic_reads() -> None:
    import re

    import ser.fusion.classic
    from ser.ablate.report import CLASSIC_TRAIN_KEYS

    documented = set(re.findall(r"``(train\.\w+)``", ser.fusion.classic.__doc__ or ""))
    assert documented == set(CLASSIC_TRAIN_KEYS)


def test_a_classic_fit_reports_its_metrics_json_numbers_without_epochs(corpus: dict[str, Path]) -> None:
    """A real two-seed logreg fit beside a one-seed mlp: the report's mean ± std equals ser fit's own
    (over folds: the seeds share one deterministic fit), its epochs are empty, and train.lr, which
    differs but applies only to the mlp, is no column."""
    from ser.fusion.config import config_from_dict

    grid = write_grid(corpus, axes={"fusion": ["mlp"]}, seeds=[0])
    record = expand(load_grid(grid))[0].record
    run_fit(config_from_dict(record))
    logreg_dir = run_fit(config_from_dict(dict(record, fusion="logreg", seeds=[0, 1], train={"lr": 0.5})))
    cells = collect(corpus["root"] / "runs")
    logreg = next(c for c in cells if c.classic)
    assert logreg.name == logreg_dir.name and len(logreg.runs) == 4
    reference = metrics(logreg_dir)["test"]
    for key in ("ua", "wa", "macro_f1", "weighted_f1"):
        assert logreg.summary()[key]["mean"] == pytest.approx(reference[key]["mean"], abs=1e-12)
        assert logreg.summary()[key]["std"] == pytest.approx(reference[key]["std"], abs=1e-12)
    section = sections(cells)[0]
    assert section.columns == ["fusion", "recipe", "train.refit"]  # the classic preset refits; mlp's does not
    md = markdown([section], "classic")
    assert f"| {logreg.name} | logreg | ser | True | 2 | 2 | 4 |" in md
    _, rows = run_rows(cells)
    assert {(r["best_epoch"], r["epochs_run"]) for r in rows if r["cell"] == logreg.name} == {("", "")}
    assert all(isinstance(r["epochs_run"], int) for r in rows if r["cell"] != logreg.name)
