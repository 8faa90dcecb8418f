"""``ser fit --no-models``: no weights on disk, the same numbers and run directory, and a clear refusal from predict."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ser.cli import app
from tests.fakes.caches import make_corpus


def _fit(tmp_path: Path, out: str, *extra: str) -> tuple[int, str]:
    if not (tmp_path / "m.jsonl").exists():
        make_corpus(tmp_path, n_speakers=3, per_speaker=8)
    manifest, audio = tmp_path / "m.jsonl", tmp_path / "audio.h5"
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
            "--audio",
            f"{audio}:layer=1",
            "--set",
            "val_by=utterance",
            "--set",
            "train.epochs=2",
            "--folds",
            "spk0",
            "-o",
            str(tmp_path / out),
            *extra,
        ],
    )
    return result.exit_code, result.output


def test_no_models_keeps_numbers_and_name_and_predict_says_why(tmp_path: Path) -> None:
    assert _fit(tmp_path, "with")[0] == 0
    code, output = _fit(tmp_path, "without", "--no-models")
    assert code == 0, output
    (with_models,) = (tmp_path / "with").iterdir()
    (without,) = (tmp_path / "without").iterdir()
    assert with_models.name == without.name  # where the weights go is not part of the config hash
    assert (
        json.loads((with_models / "metrics.json").read_text())["test"]
        == json.loads((without / "metrics.json").read_text())["test"]
    )
    assert list((with_models / "models").glob("*.safetensors"))
    assert not list((without / "models").glob("*.safetensors"))
    result = CliRunner().invoke(app, ["predict", str(without), "x.wav", "--device", "cpu"])
    assert result.exit_code == 2 and "fitted with --no-models" in result.output


def test_final_without_models_is_refused(tmp_path: Path) -> None:
    code, output = _fit(tmp_path, "runs", "--no-models", "--final")
    assert code == 2 and "--final trains a model to deploy, but --no-models" in output
    assert not (tmp_path / "runs").exists()
