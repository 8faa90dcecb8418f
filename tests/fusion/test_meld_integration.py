"""Integration on real MELD text: the MiniLM store read with no view equals ``stat=mean`` (its training
pooling), and the official split tested on dev carves validation from the training split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ser.cli import app


def _fit(manifest: Path, text: str, out: Path) -> tuple[dict, dict]:
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "--fusion",
            "logreg",
            "-m",
            str(manifest),
            "-p",
            "official",
            "--text",
            text,
            "--set",
            "protocol_options.test_split=validation",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("run directory: ")[1])
    return (json.loads((run_dir / "metrics.json").read_text()), yaml.safe_load((run_dir / "config.yaml").read_text()))


@pytest.mark.slow
def test_minilm_without_a_view_reads_the_mean_it_was_trained_with(
    meld_minilm: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, store = meld_minilm
    info = CliRunner().invoke(app, ["cache", "info", str(store)])
    assert "recommended view: meld.minilm.h5:stat=mean,layer=last" in info.output
    auto, auto_config = _fit(manifest, str(store), tmp_path / "a")
    mean, _ = _fit(manifest, f"{store}:stat=mean,layer=last", tmp_path / "b")
    cls, _ = _fit(manifest, f"{store}:stat=cls", tmp_path / "c")
    assert auto_config["inputs"]["text"]["view"] == "meld.minilm.h5:stat=mean,layer=last"
    assert auto["test"] == mean["test"] and auto["runs"][0]["test"]["n"] == 200  # tested on dev, once
    assert auto["test"] != cls["test"]
    card = auto["protocol_card"]
    assert any("official training split" in note for note in card["notes"])  # validation carved from train
