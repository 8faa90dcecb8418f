"""``ser demo`` end to end on the packaged RAVDESS subset (offline, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ser.cli import app


@pytest.mark.slow
def test_demo_runs_offline_and_reports_an_mlp_and_a_fusion_head(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir), "--epochs", "8"])
    assert result.exit_code == 0, result.output
    assert "ravdess: 240 utterances found, 240 written" in result.output
    assert result.output.count("mean ± std over folds: UA") == 2  # one seed each
    assert "only the audio branch can" in result.output
    assert "mlp (ser recipe) on ravdess" in result.output and "fleser (ser recipe) on ravdess" in result.output
    runs = {}
    for run in sorted((workdir / "runs").iterdir()):
        saved = yaml.safe_load((run / "config.yaml").read_text())
        runs[saved["config"]["fusion"]] = (run, saved)
    assert sorted(runs) == ["fleser", "mlp"]
    mlp, fleser = runs["mlp"][1], runs["fleser"][1]
    assert set(mlp["inputs"]) == {"audio"} and mlp["config"]["text"] is None
    assert set(fleser["inputs"]) == {"audio", "text"}  # the fusion head gets both branches
    assert fleser["inputs"]["audio"]["extractor"]["name"] == "egemaps"
    assert fleser["inputs"]["text"]["extractor"]["name"] not in ("", "egemaps")
    assert fleser["inputs"]["audio"] == mlp["inputs"]["audio"]  # the same audio features
    assert fleser["config"]["train"] == mlp["config"]["train"]  # one recipe for both heads
    for run, _ in runs.values():
        assert (run / "confusion.png").stat().st_size > 1000
        metrics = json.loads((run / "metrics.json").read_text())
        assert [r["fold"] for r in metrics["runs"]] == ["Actor_01", "Actor_02", "Actor_03", "Actor_04"]
        assert metrics["test"]["ua"]["mean"] > 0.125  # above chance for 8 classes
    assert "predict one clip with the audio-only MLP of fold Actor_01" in result.output
    predicted = result.output.split("(true label: angry) -> ")[1].split()[0]
    assert predicted in ("neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur")
    assert "--members Actor_01" in result.output
    for run, _ in runs.values():
        assert len(list((run / "models").glob("*-seed0.safetensors"))) == 4  # one model file per fold
    again = CliRunner().invoke(app, ["demo", "--workdir", str(workdir), "--epochs", "8"])
    assert again.exit_code == 0 and again.output.count("already complete") == 2  # caches are reused
