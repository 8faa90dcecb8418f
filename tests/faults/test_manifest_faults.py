"""Manifest rows every stage would misread are refused by every stage alike, naming the lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.schema import ManifestError, ManifestHeader, Utterance, read_manifest, write_manifest


def _manifest(tmp_path: Path, rows: list[Utterance]) -> Path:
    soundfile.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    path = tmp_path / "m.jsonl"
    write_manifest(path, ManifestHeader(corpus="ravdess", root=str(tmp_path)), rows)
    return path


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [Utterance(id="x", audio="a.wav"), Utterance(id="x", audio="a.wav")],
            r"1 duplicate ids \(line 3 'x' \(first at line 2\)\)",
        ),
        (
            [Utterance(id="x", audio="a.wav"), Utterance(id="x@aug0", audio="a.wav")],
            r"1 ids holding the reserved mark '@aug' \(line 3 'x@aug0'\)",
        ),
        ([Utterance(id="x", audio="a.wav", start=-1.0, end=0.5)], r"1 impossible segments \(line 2 'x' \(start -1.0"),
        ([Utterance(id="x", audio="a.wav", start=0.5, end=0.5)], r"impossible segments"),
    ],
)
def test_read_manifest_refuses_rows_every_stage_would_misread(
    tmp_path: Path, rows: list[Utterance], message: str
) -> None:
    path = _manifest(tmp_path, rows)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)
    assert len(read_manifest(path, strict=False)) == len(rows)  # validate reads it to list every problem


def test_extract_fit_and_validate_agree_on_duplicate_ids(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        [
            Utterance(id="x", audio="a.wav", label="angry", speaker="1"),
            Utterance(id="x", audio="a.wav", label="sad", speaker="2"),
        ],
    )
    runner = CliRunner()
    for args in (
        ["extract", "--model", "egemaps", "-m", str(path), "-o", str(tmp_path / "f.h5")],
        [
            "fit",
            "-f",
            "mlp",
            "-m",
            str(path),
            "-p",
            "speaker-loso",
            "--audio",
            str(tmp_path / "f.h5"),
            "-o",
            str(tmp_path / "runs"),
        ],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "duplicate ids" in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "runs").exists()
    validated = runner.invoke(app, ["manifest", "validate", str(path)])
    assert validated.exit_code == 1 and "duplicate id" in validated.output


def test_validate_finds_segments_past_the_end_and_reserved_ids(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        [
            Utterance(id="late", audio="a.wav", label="angry", start=2.0, end=3.0),
            Utterance(id="long", audio="a.wav", label="angry", start=0.0, end=1.5),
            Utterance(id="ok", audio="a.wav", label="angry", start=0.2, end=1.05),
            Utterance(id="y@aug1", audio="a.wav", label="angry"),
        ],
    )
    result = CliRunner().invoke(app, ["manifest", "validate", str(path)])
    assert result.exit_code == 1
    assert "segment past the end of the audio" in result.output
    assert "late (start 2.0 s, the file lasts 1.00 s)" in result.output
    assert "long (end 1.5 s, the file lasts 1.00 s)" in result.output and " ok " not in result.output
    assert "reserved id" in result.output and "y@aug1" in result.output


def test_an_empty_manifest_is_refused_by_extract(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [])
    result = CliRunner().invoke(app, ["extract", "--model", "egemaps", "-m", str(path), "-o", str(tmp_path / "f.h5")])
    assert result.exit_code == 2 and "holds no rows" in result.output
    assert not (tmp_path / "f.h5").exists()


def test_a_label_the_corpus_does_not_have_stops_the_fit(tmp_path: Path) -> None:
    rows = [
        Utterance(id=f"s{s}_{k}", audio="a.wav", label=("angry", "sad", "happy")[k % 3], speaker=f"Actor_0{s}")
        for s in range(1, 4)
        for k in range(6)
    ]
    rows.append(Utterance(id="typo", audio="a.wav", label="angyr", speaker="Actor_01"))
    path = _manifest(tmp_path, rows)
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "-f",
            "mlp",
            "-m",
            str(path),
            "-p",
            "speaker-loso",
            "--audio",
            str(tmp_path / "missing.h5"),
            "-o",
            str(tmp_path / "runs"),
        ],
    )
    assert result.exit_code == 2
    assert "1 rows have labels ravdess does not have ('angyr' x1)" in result.output
    assert not (tmp_path / "runs").exists()


def test_validate_refuses_empty_and_non_audio_files(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        [
            Utterance(id="empty", audio="empty.wav", label="angry"),
            Utterance(id="text", audio="notes.wav", label="angry"),
            Utterance(id="ok", audio="a.wav", label="angry"),
        ],
    )
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("these are not samples")
    result = CliRunner().invoke(app, ["manifest", "validate", str(path)])
    assert result.exit_code == 1
    assert "empty audio file" in result.output and "empty (0 bytes)" in result.output
    assert "unreadable audio" in result.output and "notes.wav" in result.output
    assert " ok " not in result.output


def test_max_seconds_is_refused_by_name_for_families_without_it(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [Utterance(id="a", audio="a.wav")])
    result = CliRunner().invoke(
        app, ["extract", "--model", "logmel", "-m", str(path), "-o", str(tmp_path / "f.h5"), "--max-seconds", "10"]
    )
    assert result.exit_code == 2 and "--max-seconds cuts long audio for hubert, wav2vec2 and wavlm" in result.output
