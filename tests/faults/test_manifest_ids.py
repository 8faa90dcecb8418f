"""Ids that look equal to another id (invisible characters, edge spaces) are refused wherever ids are made or read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.schema import ManifestError, ManifestHeader, Utterance, id_problem, read_manifest, write_manifest


def _manifest(tmp_path: Path, ids: list[str]) -> Path:
    soundfile.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    path = tmp_path / "m.jsonl"
    rows = [Utterance(id=uid, audio="a.wav", label="angry", speaker="Actor_01") for uid in ids]
    write_manifest(path, ManifestHeader(corpus="ravdess", root=str(tmp_path)), rows)
    return path


@pytest.mark.parametrize(
    ("uid", "shown"),
    [
        ("X\x00", r"holds \x00 (a control character) at character 2"),
        ("X\t1", r"holds \x09 (a control character) at character 2"),
        ("X\u200b", r"holds \u200b (ZERO WIDTH SPACE, an invisible format character) at character 2"),
        ("\ufeffX", r"holds \ufeff (ZERO WIDTH NO-BREAK SPACE, an invisible format character) at character 1"),
        ("a\u00a0b", r"holds \xa0 (NO-BREAK SPACE, a space other than the plain space) at character 2"),
        ("a\u2028b", r"holds \u2028 (LINE SEPARATOR, a line separator) at character 2"),
        ("X ", r"ends with a space (\x20)"),
        (" X", r"starts with a space (\x20)"),
    ],
)
def test_read_manifest_names_line_and_escaped_character(tmp_path: Path, uid: str, shown: str) -> None:
    path = _manifest(tmp_path, ["X", uid])
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 1 ids holding invisible characters (line 3 {uid!r} ({shown})")
    assert "rename the id to visible characters only" in message and "\n" not in message
    assert len(read_manifest(path, strict=False)) == 2  # validate still reads it to list every problem


@pytest.mark.parametrize("uid", ["X", "a b", "Ünïcödé_名前", "03-01-01-01-01-01-01", "Ses01F_impro01_F000"])
def test_ordinary_ids_are_accepted(uid: str) -> None:
    assert id_problem(uid) is None


def test_validate_reports_a_trailing_nul(tmp_path: Path) -> None:
    path = _manifest(tmp_path, ["X", "X\x00"])
    result = CliRunner().invoke(app, ["manifest", "validate", str(path)])
    assert result.exit_code == 1, result.output
    assert f"invisible characters in id: 1 rows: {path}:3 'X\\x00' (holds \\x00 (a control character)" in result.output
    assert "\x00" not in result.output  # the character itself is never printed


def test_extract_refuses_before_writing_anything(tmp_path: Path) -> None:
    path = _manifest(tmp_path, ["X", "X\x00"])
    out = tmp_path / "f.h5"
    result = CliRunner().invoke(app, ["extract", "--model", "egemaps", "-m", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "line 3 'X\\x00' (holds \\x00" in result.output and "Traceback" not in result.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "m.jsonl"]


def test_a_hand_written_json_escape_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    lines = [{"ser_manifest": 1, "corpus": "unknown", "root": "."}, {"id": "X"}, {"id": "X\u200b"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line 3 'X\\u200b' \(holds \\u200b"):
        read_manifest(path)


def test_csv_builder_names_the_csv_line(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text(
        "id,audio,label,speaker,text\nX,a.wav,angry,1,\nX\x00,a.wav,angry,1,\n", encoding="utf-8"
    )
    out = tmp_path / "m.jsonl"
    result = CliRunner().invoke(
        app, ["manifest", "csv", str(tmp_path), "--csv", "meta.csv", "--id-col", "id", "-o", str(out), "--no-durations"]
    )
    assert result.exit_code == 2, result.output
    assert "meta.csv:3: id 'X\\x00' holds \\x00 (a control character) at character 2" in result.output
    assert not out.exists()


def test_corpus_adapter_ids_go_through_the_same_check(tmp_path: Path) -> None:
    folder = tmp_path / "tess" / "OAF_angry"
    folder.mkdir(parents=True)
    for stem in ("OAF_back_angry", "OAF_back\u200b_angry"):
        soundfile.write(folder / f"{stem}.wav", np.zeros(1600), 16000)
    out = tmp_path / "m.jsonl"
    result = CliRunner().invoke(app, ["manifest", "tess", str(tmp_path / "tess"), "-o", str(out), "--no-durations"])
    assert result.exit_code == 2, result.output
    assert "1 utterance ids hold invisible characters: 'OAF_back\\u200b_angry' (holds \\u200b" in result.output
    assert not out.exists()
