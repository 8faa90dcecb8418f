"""``ser protocol show``: bad options are one-line errors (exit 2), never tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

runner = CliRunner()


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A RAVDESS-like manifest of 4 speakers x 8 labels x 2 takes (no audio needed for protocols)."""
    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    rows = [
        Utterance(id=f"a{s}_{label}_{take}", label=label, speaker=f"a{s}", gender="MF"[s % 2], duration=2.0)
        for s in range(4)
        for label in labels
        for take in range(2)
    ]
    path = tmp_path / "rav.jsonl"
    write_manifest(path, ManifestHeader(corpus="ravdess", root=str(tmp_path)), rows)
    return path


def _invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_show_prints_folds_and_saves_them(manifest: Path, tmp_path: Path) -> None:
    code, out = _invoke(
        "protocol", "show", "speaker-kfold", manifest, "-O", "k=2", "--fold", "fold2", "--save", tmp_path / "folds.json"
    )
    assert code == 0, out
    assert "label set ravdess8, 64 utterances, 2 folds, seed 0" in out
    assert "fold fold2: sizes per label" in out
    saved = json.loads((tmp_path / "folds.json").read_text())
    assert [f["name"] for f in saved["folds"]] == ["fold1", "fold2"]
    assert sorted(len(f["test"]) for f in saved["folds"]) == [32, 32]
    assert out.splitlines()[-1] == f"folds written to {tmp_path / 'folds.json'}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["speaker-loso", "--fold", "nope"],
            "error: protocol 'speaker-loso' has no fold 'nope'; its folds are a0, a1, a2, a3",
        ),
        (
            ["speaker-kfold", "-O", "k=abc"],
            "error: protocol 'speaker-kfold': option k must be a whole number, not 'abc'; pass e.g. -O k=5",
        ),
        (
            ["speaker-kfold", "-O", "k=9"],
            "error: speaker-kfold: k must be between 2 and the number of speakers (4), got 9",
        ),
        (["speaker-loso", "-O", "k=2"], "error: protocol 'speaker-loso' has no option k; it takes no options"),
    ],
)
def test_bad_protocol_options_are_one_line_errors(manifest: Path, args: list[str], message: str) -> None:
    protocol, *rest = args
    code, out = _invoke("protocol", "show", protocol, manifest, *rest)
    assert code == 2
    assert out.strip() == message


def test_save_into_a_missing_folder_is_a_one_line_error(manifest: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "f.json"
    code, out = _invoke("protocol", "show", "speaker-loso", manifest, "--save", target)
    assert code == 2
    assert out.strip() == (
        f"error: cannot write the folds to {target}: the folder {target.parent} does not exist; "
        "create it or choose another path"
    )
    assert not target.parent.exists()


def test_empty_validation_is_refused_with_the_fix(tmp_path: Path) -> None:
    rows = [
        Utterance(id=f"s{s}_{label}", label=label, speaker=f"s{s}")
        for s in range(2)
        for label in ("neutral", "angry", "sad")
    ]
    path = tmp_path / "tiny.jsonl"
    write_manifest(path, ManifestHeader(corpus="ravdess", root="."), rows)
    code, out = _invoke("protocol", "show", "speaker-loso", path, "--val-by", "utterance")
    assert code == 2
    assert out.startswith("error: fold s0: the validation set is empty (3 training rows")
    assert "raise --val-fraction (val_fraction), switch --val-by (val_by)" in out
