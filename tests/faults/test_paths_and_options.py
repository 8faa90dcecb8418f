"""Paths built from user input stay inside their output folder; bad fit options leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.fusion.config import safe_name
from tests.fakes.caches import LABELS, make_corpus


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ravdess8", "ravdess8"),
        ("../../sets.json#rv", "___.._sets.json_rv"),
        ("..", "__"),
        ("a/b\\c", "a_b_c"),
        (".hidden", "_hidden"),
    ],
)
def test_names_become_one_harmless_path_component(text: str, expected: str) -> None:
    assert safe_name(text) == expected


def test_a_label_set_path_with_dot_dots_cannot_put_the_run_outside_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, audio, _ = make_corpus(tmp_path, n_speakers=3, per_speaker=8)
    (tmp_path / "sets.json").write_text(
        json.dumps({"rv": {"classes": sorted(set(LABELS)), "map": {label: label for label in LABELS}}})
    )
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
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
            "-l",
            "../../../sets.json#rv",
            "--set",
            "train.epochs=1",
            "--set",
            "val_by=utterance",
            "--folds",
            "spk0",
            "-o",
            "out",
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = (work / "out").iterdir()
    assert run.name.startswith("mlp-ser-speaker-loso-") and "sets.json_rv" in run.name
    assert (run / "metrics.json").is_file()
    for folder in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):  # where ../ would have led
        assert not [p for p in folder.iterdir() if p.name.startswith("mlp-") or p.name == "out"]
