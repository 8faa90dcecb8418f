"""``ser predict`` rebuilds a HuBERT-style extractor from a run's records and refuses a different upstream.

A tiny random HuBERT saved with ``save_pretrained`` (the real loading code) extracts 84 real RAVDESS
clips; an MLP is fitted on its recommended view (mean over frames, learned layer weights).
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.extract.conftest import _save_ssl
from tests.fakes.demo import demo_manifest


@pytest.fixture(scope="module")
def hubert_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.schema import read_manifest, write_manifest

    folder = tmp_path_factory.mktemp("hubert-predict")
    checkpoint = _save_ssl(folder / "hubert", "hubert", "group", seed=5)
    manifest = demo_manifest(folder, speakers=["Actor_01", "Actor_02", "Actor_03"], name="small.jsonl")
    rows = read_manifest(manifest)
    write_manifest(manifest, rows.header, [u for u in rows.utterances if u.id.split("-")[3] == "02"])  # strong
    store = folder / "hubert.h5"
    run_extraction(
        manifest,
        build_extractor("hubert", checkpoint=str(checkpoint)),
        store,
        RunOptions(num_workers=0, progress=False),
    )
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "-f",
            "mlp",
            "-m",
            str(manifest),
            "-p",
            "speaker-loso",
            "--set",
            "val_by=utterance",
            "--audio",
            str(store),
            "--set",
            "train.epochs=2",
            "-o",
            str(folder / "runs"),
        ],
    )
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip().splitlines()[-1].split("run directory: ")[1])
    return {"run": run, "checkpoint": checkpoint, "manifest": manifest, "folder": folder}


def _predict(run: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", str(run), *args, "--device", "cpu", "--no-progress"])
    return result.exit_code, result.output


def test_the_recorded_hubert_is_rebuilt_and_reproduces_the_test_predictions(hubert_run: dict[str, Path]) -> None:
    import csv

    run = hubert_run["run"]
    index = json.loads((run / "models" / "index.json").read_text())
    audio = index["inputs"]["audio"]
    assert audio["view"] == {"kind": "pooled", "stat": "mean", "layer": "weighted"} and audio["n_layers"] == 3
    assert len(audio["upstream"]["weights_sha256"]) == 64
    code, output = _predict(run, "-m", str(hubert_run["manifest"]))
    assert code == 0, output
    got = {row["id"]: row for row in csv.DictReader(output.splitlines())}
    with open(run / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    fold = rows[0]["fold"]
    code, output = _predict(run, "-m", str(hubert_run["manifest"]), "--members", fold)
    got = {row["id"]: row for row in csv.DictReader(output.splitlines())}
    for row in (r for r in rows if r["fold"] == fold):
        assert got[row["id"]]["pred"] == row["pred"]
        assert all(abs(float(got[row["id"]][k]) - float(row[k])) <= 1e-5 for k in row if k.startswith("p_"))


def test_weights_replaced_in_place_are_refused_and_a_relocated_copy_is_accepted(
    hubert_run: dict[str, Path], tmp_path: Path
) -> None:
    run, checkpoint = hubert_run["run"], hubert_run["checkpoint"]
    clip = next(Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k", "Actor_04"))).glob("*.flac"))
    copy = tmp_path / "hubert-copy"
    shutil.copytree(checkpoint, copy)
    code, output = _predict(run, str(clip), "--checkpoint", f"audio={copy}")
    assert code == 0, output  # same weights, another folder
    code, output = _predict(run, str(clip), "--checkpoint", "text=/elsewhere")
    assert code == 2 and "no such input" in output
    retrained = _save_ssl(tmp_path / "hubert-other", "hubert", "group", seed=6)
    code, output = _predict(run, str(clip), "--checkpoint", f"audio={retrained}")
    assert code == 2 and "upstream.weights_sha256: the run used" in output
    moved = hubert_run["folder"] / "moved-run"
    shutil.copytree(run, moved)
    index_path = moved / "models" / "index.json"
    index = json.loads(index_path.read_text())
    index["inputs"]["audio"]["extractor"]["config"]["model"] = str(retrained)  # as if trained on the other model
    index_path.write_text(json.dumps(index))
    code, output = _predict(moved, str(clip))
    assert code == 2 and "weights_sha256" in output and "differs from the one the run was trained on" in output
