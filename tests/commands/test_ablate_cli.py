"""``ser ablate`` and ``ser report`` through the CLI: dry run states, exit statuses, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.ablate.grid import expand, load_grid
from ser.cli import app
from tests.conftest import REPO_ROOT
from tests.fakes.caches import tiny_corpus, write_grid


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return tiny_corpus(tmp_path)


def test_dry_run_then_run_then_dry_run(corpus: dict[str, Path]) -> None:
    grid = write_grid(corpus, axes={"train.lr": [0.01, 0.001]})
    runner = CliRunner()
    plan = runner.invoke(app, ["ablate", str(grid), "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "2 jobs: 0 done, 0 running, 0 crashed, 2 todo" in plan.output
    assert "train.lr=0.01" in plan.output and "train.lr=0.001" in plan.output
    run = runner.invoke(app, ["ablate", str(grid), "-j", "2", "--device", "cpu"])
    assert run.exit_code == 0, run.output
    assert "2 jobs: 2 ran, 0 already done, 0 done by another process, 0 failed, 0 not run" in run.output
    assert "report:" in run.output and (corpus["root"] / "runs" / "report" / "report.md").exists()
    plan = runner.invoke(app, ["ablate", str(grid), "-n"])
    assert "2 jobs: 2 done, 0 running, 0 crashed, 0 todo" in plan.output
    shown = runner.invoke(
        app, ["report", str(corpus["root"] / "runs"), "--no-plots", "-o", str(corpus["root"] / "rep")]
    )
    assert shown.exit_code == 0 and "| cell | fusion | recipe | train.lr |" in shown.output


def test_a_failed_job_makes_exit_status_1_and_is_listed(corpus: dict[str, Path]) -> None:
    grid = write_grid(corpus, axes={"audio:store": [str(corpus["root"] / "missing.h5")]})
    result = CliRunner().invoke(app, ["ablate", str(grid), "--device", "cpu", "--no-report"])
    assert result.exit_code == 1
    assert "1 failed" in result.output and "failed: audio:store=" in result.output and "missing.h5" in result.output


def test_bad_grids_and_folders_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {fusion: mlp}\naxes: {seed: [0, 1]}\n")
    result = runner.invoke(app, ["ablate", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "seeds are not an axis" in result.output
    result = runner.invoke(app, ["ablate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "cannot read the grid file" in result.output
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no finished runs" in result.output
    good = tmp_path / "g.yaml"
    good.write_text("base: {fusion: mlp, manifest: m.jsonl, protocol: speaker-loso}\n")
    result = runner.invoke(app, ["ablate", str(good), "--device", "gpu"])
    assert result.exit_code == 2 and "--device must be auto or cpu" in result.output
    result = runner.invoke(app, ["ablate", str(good), "--executor", "pbs"])
    assert result.exit_code == 2 and "unknown executor 'pbs'" in result.output


def test_the_readme_example_grid_expands_to_sixteen_jobs() -> None:
    jobs = expand(load_grid(REPO_ROOT / "examples" / "demo-grid.yaml"))
    assert len(jobs) == 16
    assert {j.config.fusion for j in jobs} == {"mlp", "fleser"}
    assert {j.config.audio for j in jobs} == {
        "ser-demo/egemaps.h5:stat=functionals",
        "ser-demo/egemaps.h5:stat=lld_mean",
    }
    assert {j.config.text for j in jobs} == {None, "ser-demo/minilm.h5:stat=mean"}
