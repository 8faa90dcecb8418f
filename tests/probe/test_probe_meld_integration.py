"""Integration on real MELD text: a MiniLM layer sweep (7 layers + the learned mix) over the official split
tested on dev, each probe equal to a plain ``ser fit`` on its layer's view."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.probe.runs import ua_by_member

OPTIONS = ["-p", "official", "--set", "protocol_options.test_split=validation", "--seeds", "0,1"]
MLP = [
    "--set",
    "head.dropout=0",
    "--set",
    "head.input_dropout=0",
    "--set",
    "train.epochs=5",
    "--set",
    "train.patience=0",
]


@pytest.mark.slow
def test_minilm_sweep_on_meld(meld_minilm: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, store = meld_minilm
    args = ["probe", "-f", "mlp", "-m", str(manifest), "--text", str(store), *OPTIONS, *MLP, "-q", "-o", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = Path(
        next(line for line in result.output.splitlines() if line.endswith("probe.csv"))[len("wrote ") :]
    ).parent
    rows = list(csv.DictReader((folder / "probe.csv").open()))
    assert [row["layer"] for row in rows] == [*map(str, range(7)), "weighted"]  # MiniLM-L6: embedding + 6 layers
    assert all(row["n_folds"] == "1" and row["n_seeds"] == "2" for row in rows)
    assert sum(row["verdict"] == "best layer" for row in rows) == 1
    assert (folder / "probe.png").exists() and (folder / "layer_weights.png").exists()
    fit = CliRunner().invoke(
        app,
        [
            "fit",
            "-f",
            "mlp",
            "-m",
            str(manifest),
            "--text",
            f"{store}:stat=mean,layer=6",
            *OPTIONS,
            *MLP,
            "--engine",
            "sequential",
            "-q",
            "-o",
            str(tmp_path / "fit"),
        ],
    )
    assert fit.exit_code == 0, fit.output
    plain = Path(fit.output.strip().splitlines()[-1].split("run directory: ")[1])
    probe_ua, plain_ua = ua_by_member(tmp_path / rows[6]["run_dir"]), ua_by_member(plain)
    assert probe_ua.keys() == plain_ua.keys() and all(abs(probe_ua[k] - plain_ua[k]) <= 1e-5 for k in plain_ua)
    assert json.loads((plain / "metrics.json").read_text())["runs"][0]["test"]["n"] == 200  # dev, tested once
