"""Integration on real data: the documented example grid (examples/demo-grid.yaml, docs/guides/ablate.md)
over the packaged RAVDESS actors 01-04, through the CLI, then ``ser report``; numbers equal the run
directories'."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.conftest import REPO_ROOT

GRID = REPO_ROOT / "examples" / "demo-grid.yaml"


@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `ser demo` leaves in ser-demo/: the manifest and the eGeMAPS and MiniLM caches."""
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.build import build_manifest

    root = tmp_path_factory.mktemp("demo-grid")
    folder = root / "ser-demo"
    folder.mkdir()
    corpus = Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k")))
    manifest = folder / "ravdess-demo.jsonl"
    build_manifest("ravdess", corpus, manifest)
    for family, store in (("egemaps", "egemaps.h5"), ("minilm", "minilm.h5")):
        result = run_extraction(
            manifest, build_extractor(family, device="cpu"), folder / store, RunOptions(num_workers=2, progress=False)
        )
        assert not result.rejected
    return root


@pytest.mark.slow
def test_example_grid_runs_and_reports_on_the_demo_data(demo_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo_workdir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    plan = runner.invoke(app, ["ablate", str(GRID), "--dry-run", "--set", "seeds=[0]"])
    assert plan.exit_code == 0, plan.output
    assert "8 jobs: 0 done, 0 running, 0 crashed, 8 todo" in plan.output
    result = runner.invoke(
        app, ["ablate", str(GRID), "--set", "train.epochs=8", "--set", "seeds=[0]", "-j", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "8 jobs: 8 ran, 0 already done" in result.output
    report_dir = demo_workdir / "runs" / "demo-grid" / "report"
    rows = {
        (r["fusion"], r["audio"], r["text"]): r
        for r in csv.DictReader((report_dir / "report.csv").read_text(encoding="utf-8").splitlines())
    }
    assert len(rows) == 8
    for run_dir in (demo_workdir / "runs" / "demo-grid").glob("*/metrics.json"):
        metrics = json.loads(run_dir.read_text())
        config = json.loads((run_dir.parent / "job.json").read_text())
        row = rows[(config["fusion"], config["audio"], config["text"] or "-")]
        assert float(row["ua_mean"]) == pytest.approx(metrics["test"]["ua"]["mean"], abs=1e-6)
        assert [r["fold"] for r in metrics["runs"]] == ["Actor_01", "Actor_02", "Actor_03", "Actor_04"]
    audio_only = rows[("mlp", "ser-demo/egemaps.h5:stat=functionals", "-")]
    assert float(audio_only["ua_mean"]) > 0.2  # chance is 0.125 for 8 classes
    again = runner.invoke(app, ["ablate", str(GRID), "--set", "train.epochs=8", "--set", "seeds=[0]", "--no-report"])
    assert again.exit_code == 0 and "8 jobs: 0 ran, 8 already done" in again.output
    shown = runner.invoke(app, ["report", "runs/demo-grid"])
    assert shown.exit_code == 0 and "| cell | fusion | recipe | audio | text |" in shown.output
