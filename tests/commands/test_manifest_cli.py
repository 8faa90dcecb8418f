"""``ser manifest`` and ``ser protocol`` end to end through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest
from tests.fakes import write_tone

runner = CliRunner()


def test_real_ravdess_manifest_validate_and_protocol(ravdess_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rav.jsonl"
    result = runner.invoke(app, ["manifest", "ravdess", str(ravdess_root), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "1200 utterances found, 1200 written" in result.stdout
    result = runner.invoke(app, ["manifest", "validate", str(out), "--label-set", "ravdess8"])
    assert result.exit_code == 0, result.output
    assert "1200 rows (ravdess)" in result.stdout and "neu 80" in result.stdout and "ok" in result.stdout
    folds_json = tmp_path / "folds.json"
    result = runner.invoke(app, ["protocol", "show", "speaker-loso", str(out), "--save", str(folds_json)])
    assert result.exit_code == 0, result.output
    assert "label set ravdess8, 1200 utterances, 20 folds, seed 0" in result.stdout
    assert "speaker-independent: yes" in result.stdout
    saved = json.loads(folds_json.read_text())
    assert len(saved["folds"]) == 20 and saved["card"]["protocol"] == "speaker-loso"
    assert all(len(f["test"]) == 60 for f in saved["folds"])


def test_label_set_filter_at_build_time_counts_drops(ravdess_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rav7.jsonl"
    result = runner.invoke(
        app, ["manifest", "ravdess", str(ravdess_root), "-o", str(out), "--label-set", "esd4", "--no-durations"]
    )
    assert result.exit_code == 0, result.output
    # esd4 maps the raw words angry/happy/sad/neutral, which RAVDESS shares; the other four are dropped
    assert "1200 utterances found, 560 written" in result.stdout
    assert "dropped by label set: 640 (calm 160, disgust 160, fearful 160, surprised 160)" in result.stdout
    manifest = read_manifest(out)
    assert manifest.header.label_set == "esd4"
    assert all(u.duration is None for u in manifest)


def test_bad_inputs_exit_with_clear_messages(tmp_path: Path) -> None:
    result = runner.invoke(app, ["manifest", "ravdess", str(tmp_path / "missing"), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "RAVDESS root not found" in result.output
    result = runner.invoke(app, ["manifest", "ravdess", str(tmp_path), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "found no utterances" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "audio": "nope.wav", "label": "ang"}\n', encoding="utf-8")
    result = runner.invoke(app, ["manifest", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"missing audio: 1 rows: {bad}:1 a" in result.output
    result = runner.invoke(app, ["protocol", "show", "nope", str(bad)])
    assert result.exit_code == 2 and "unknown protocol 'nope'" in result.output
    result = runner.invoke(app, ["protocol", "show", "speaker-loso", str(bad), "--val-fraction", "2"])
    assert result.exit_code == 2 and "between 0 and 1" in result.output


def test_csv_adapter_from_the_cli_with_an_ignored_column(tmp_path: Path) -> None:
    for name in ("a.wav", "b.wav"):
        write_tone(tmp_path / "audio" / name)
    (tmp_path / "meta.csv").write_text("path,emotion,who\naudio/a.wav,ang,s1\naudio/b.wav,neu,s2\n", encoding="utf-8")
    out = tmp_path / "m.jsonl"
    result = runner.invoke(
        app,
        [
            "manifest",
            "csv",
            str(tmp_path),
            "--csv",
            "meta.csv",
            "-o",
            str(out),
            "--audio-col",
            "path",
            "--label-col",
            "emotion",
            "--speaker-col",
            "who",
            "--text-col",
            "",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_manifest(out).utterances
    assert [(u.id, u.label, u.speaker) for u in rows] == [("audio/a", "ang", "s1"), ("audio/b", "neu", "s2")]


def test_label_sets_and_protocol_lists() -> None:
    result = runner.invoke(app, ["manifest", "label-sets"])
    assert "iemocap4" in result.stdout and "ang hap sad neu" in result.stdout
    result = runner.invoke(app, ["protocol", "list"])
    assert "iemocap-loso-script" in result.stdout and "speaker-kfold" in result.stdout


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--encoding", "nope"], "error: unknown CSV encoding 'nope'; use a Python codec name such as utf-8"),
        (
            ["--delimiter", ""],
            "error: CSV delimiter '' is not usable: it must be one character other than a quote or "
            "a line break, e.g. --delimiter ';' or --delimiter tab",
        ),
    ],
)
def test_csv_encoding_and_delimiter_mistakes_are_one_line_errors(
    tmp_path: Path, option: list[str], message: str
) -> None:
    (tmp_path / "meta.csv").write_text("audio,label\na.wav,ang\n", encoding="utf-8")
    result = runner.invoke(
        app, ["manifest", "csv", str(tmp_path), "--csv", "meta.csv", "-o", str(tmp_path / "m.jsonl"), *option]
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.jsonl").exists()


def _ravdess_manifest(tmp_path: Path, labels: list[str]) -> Path:
    rows = []
    for i, label in enumerate(labels):
        write_tone(tmp_path / f"{i}.wav", seconds=0.05)
        rows.append(Utterance(id=f"r{i}", audio=f"{i}.wav", label=label, speaker="01"))
    path = tmp_path / "rav.jsonl"
    write_manifest(path, ManifestHeader(corpus="ravdess", root=str(tmp_path)), rows)
    return path


def test_validate_without_label_set_uses_the_corpus_default(tmp_path: Path) -> None:
    path = _ravdess_manifest(tmp_path, ["angry", "banana", "calm"])
    result = runner.invoke(app, ["manifest", "validate", str(path)])
    assert result.exit_code == 1, result.output
    assert (
        f"{path}: 3 rows (ravdess); labels checked against ravdess8 (the corpus default): ang 1, cal 1" in result.output
    )
    assert (
        f"error: label unknown to the corpus: 1 rows: {path}:3 r1 ('banana'). Fix: ravdess has no such label"
        in result.output
    )
    result = runner.invoke(app, ["manifest", "validate", str(path), "--all-labels"])
    assert result.exit_code == 0, result.output
    assert "labels checked against no label set: angry 1, banana 1, calm 1" in result.output
    result = runner.invoke(app, ["manifest", "validate", str(path), "--drop-unknown"])
    assert result.exit_code == 0 and "warning: label unknown to the corpus" in result.output


def test_validate_names_a_row_with_a_wrong_field_type(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "label": "ang"}\n{"id": "b", "label": 5}\n', encoding="utf-8")
    result = runner.invoke(app, ["manifest", "validate", str(path)])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.output.strip() == (
        f"error: {path}:2: row 'b': field 'label' is 5 (a number); it must be a string "
        'or null, e.g. "5"; fix that line'
    )
