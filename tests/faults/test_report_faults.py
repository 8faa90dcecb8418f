"""``ser report`` over a runs folder holding one bad run directory: every crafted shape of metrics.json
(missing fields, wrong types, non-finite numbers, deep nesting, ...) skips that run with one warning naming
its directory and what is wrong, and the report of the good runs is written as if it were not there. Two
copies of a run with different numbers warn, naming both directories. NaN is never bold."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ser.ablate.grid import expand, load_grid
from ser.ablate.job import run_job
from ser.ablate.report import write_report
from ser.ablate.tables import Score, mark
from ser.cli import app
from tests.fakes.caches import tiny_corpus, write_grid


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished cells (lr 0.01 and 0.003), one seed, two folds."""
    root = tmp_path_factory.mktemp("report_faults")
    corpus = tiny_corpus(root)
    grid = write_grid(corpus, zip=[{"train.lr": [0.01, 0.003]}], seeds=[0])
    for job in expand(load_grid(grid)):
        assert run_job(job.record) == "ran"
    return corpus["root"] / "runs"


@pytest.fixture(scope="module")
def good_report(good_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    folder = write_report(good_runs, tmp_path_factory.mktemp("good_report"), plots=False)
    return read_csv(folder / "report.csv")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def numbers(rows: list[dict[str, str]]) -> dict[str, tuple[str, ...]]:
    return {r["cell"]: (r["ua_mean"], r["wa_mean"], r["n_runs"], r["best"]) for r in rows}


def with_run(runs: Path, tmp_path: Path, name: str) -> tuple[Path, Path, dict[str, Any]]:
    """A copy of the good runs folder plus a copy of its first run directory under ``name``: (the runs
    folder, the extra run directory, its metrics.json record)."""
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    first = sorted(d for d in copy.iterdir() if (d / "metrics.json").is_file())[0]
    extra = copy / name
    shutil.copytree(first, extra)
    return copy, extra, json.loads((extra / "metrics.json").read_text(encoding="utf-8"))


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(record: dict[str, Any]) -> dict[str, Any]:
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return record

    return change


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], Any]:
    def change(record: dict[str, Any]) -> dict[str, Any]:
        target = record
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return record

    return change


DEEP = "[" * 100_000 + "]" * 100_000
SHAPES: list[tuple[str, Callable[[dict[str, Any]], Any] | str, str]] = [
    ("no fold", _drop(["runs", 0, "fold"]), "runs[0].fold is missing"),
    ("no test", _drop(["runs", 1, "test"]), "runs[1].test is missing"),
    ("no confusion", _drop(["runs", 0, "test", "confusion"]), "runs[0].test.confusion is missing"),
    ("no ua", _drop(["runs", 0, "test", "ua"]), "runs[0].test.ua is missing"),
    ("seed abc", _set(["runs", 0, "seed"], "abc"), "runs[0].seed is 'abc', not an integer"),
    ("seed bool", _set(["runs", 0, "seed"], True), "runs[0].seed is True, not an integer"),
    ("runs empty", _set(["runs"], []), "runs is empty"),
    ("runs an object", _set(["runs"], {"a": 1}), "runs is {'a': 1}, not a list"),
    ("no runs", _drop(["runs"]), "runs is missing"),
    ("deep nesting", DEEP, "cannot read its metrics.json"),
    ("truncated", "truncated", "cannot read its metrics.json"),
    ("a list", lambda record: [record], "the file is"),
    ("ua NaN", _set(["runs", 0, "test", "ua"], float("nan")), "runs[0].test.ua is nan, not a finite fraction"),
    ("wa infinite", _set(["runs", 1, "test", "wa"], float("inf")), "runs[1].test.wa is inf, not a finite fraction"),
    ("ua a string", _set(["runs", 0, "test", "ua"], "0.5"), "runs[0].test.ua is '0.5', not an integer or a number"),
    ("ua above 1", _set(["runs", 0, "test", "ua"], 75.0), "runs[0].test.ua is 75.0, not a finite fraction"),
    ("confusion shape", _set(["runs", 0, "test", "confusion"], [[1, 2], [3, 4]]), "not a 8 x 8 matrix of counts"),
    ("confusion floats", _set(["runs", 0, "test", "confusion", 0, 0], 0.5), "not a 8 x 8 matrix of counts"),
    ("no classes", _drop(["classes"]), "classes is missing"),
    ("card a list", _set(["protocol_card"], [1]), "protocol_card is [1], not an object"),
    ("layer weights a list", _set(["runs", 0, "layer_weights"], [1.0]), "runs[0].layer_weights is [1.0]"),
    (
        "robustness without runs",
        _set(["robustness"], [{"corruption": {"type": "white", "snr_db": 10}}]),
        "robustness[0].runs is missing",
    ),
]


@pytest.mark.parametrize(("change", "problem"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_a_bad_run_is_skipped_with_a_warning_naming_it(
    good_runs: Path,
    good_report: list[dict[str, str]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    change: Callable[[dict[str, Any]], Any] | str,
    problem: str,
) -> None:
    runs, bad, record = with_run(good_runs, tmp_path, "zz-bad")
    text = json.dumps(record)
    if change == "truncated":
        text = text[: len(text) // 2]
    elif isinstance(change, str):
        text = change
    else:
        text = json.dumps(change(record))  # NaN / Infinity as Python's json writes them
    (bad / "metrics.json").write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ser.ablate.report"):
        folder = write_report(runs, tmp_path / "report", plots=False)
    assert numbers(read_csv(folder / "report.csv")) == numbers(good_report)  # the good runs, unchanged
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(bad) in r.getMessage()]
    assert len(warnings) == 1 and problem in warnings[0] and "skipped" in warnings[0], caplog.text
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "zz-bad" not in md and "nan" not in md.lower()


def test_the_cli_writes_the_report_and_exits_0(
    good_runs: Path, good_report: list[dict[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs, bad, record = with_run(good_runs, tmp_path, "zz-bad")
    record["runs"][0]["seed"] = "abc"
    (bad / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ser.ablate.report"):
        result = CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert numbers(read_csv(runs / "report" / "report.csv")) == numbers(good_report)
    assert f"{bad}: skipped" in caplog.text and "runs[0].seed is 'abc'" in caplog.text


def test_conflicting_copies_of_a_run_warn_naming_both_directories(
    good_runs: Path, good_report: list[dict[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs, copy, record = with_run(good_runs, tmp_path, "zz-copy")
    original = sorted(d for d in runs.iterdir() if (d / "metrics.json").is_file())[0]
    record["runs"][0]["test"]["ua"] = 0.123
    (copy / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ser.ablate.report"):
        folder = write_report(runs, tmp_path / "report", plots=False)
    conflicts = [r.getMessage() for r in caplog.records if "different test numbers" in r.getMessage()]
    assert len(conflicts) == 1, caplog.text
    assert str(original) in conflicts[0] and str(copy) in conflicts[0] and "0.1230" in conflicts[0]
    fold = record["runs"][0]["fold"]
    assert f"fold {fold}, seed 0" in conflicts[0]
    assert numbers(read_csv(folder / "report.csv"))[original.name][:3] == numbers(good_report)[original.name][:3]


def test_identical_copies_do_not_warn(good_runs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runs, _, _ = with_run(good_runs, tmp_path, "zz-copy")
    with caplog.at_level(logging.WARNING, logger="ser.ablate.report"):
        write_report(runs, tmp_path / "report", plots=False)
    assert "different test numbers" not in caplog.text


def test_nan_is_never_bold() -> None:
    marked = mark({"nan": Score(math.nan), "real": Score(0.5)}, "nan", {})
    assert not marked["nan"].bold and not marked["real"].bold
    marked = mark({"nan": Score(math.nan), "real": Score(0.5)}, "real", {})
    assert marked["real"].bold and not marked["nan"].bold
