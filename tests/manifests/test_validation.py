"""Manifest validation names every offending row and the fix."""

from __future__ import annotations

from pathlib import Path

from ser.manifests.labels import choose_label_set, load_label_set
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest
from ser.manifests.validation import ValidationReport, validate_manifest
from tests.fakes import write_tone


def _write(tmp_path: Path, rows: list[Utterance]) -> Path:
    path = tmp_path / "m.jsonl"
    write_manifest(path, ManifestHeader(corpus="toy", root=str(tmp_path)), rows)
    return path


def test_clean_manifest_passes_and_counts_classes(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav")
    path = _write(
        tmp_path, [Utterance(id="a", audio="a.wav", label="exc"), Utterance(id="b", audio="b.wav", label="neu")]
    )
    report = validate_manifest(read_manifest(path, strict=False), label_set=load_label_set("iemocap4"))
    assert report.ok
    assert report.label_counts == {"hap": 1, "neu": 1}
    assert not report.warnings


def test_every_problem_is_reported_with_file_line_and_id(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    rows = [
        Utterance(id="a", audio="a.wav", label="ang", text="fine"),
        Utterance(id="a", audio="a.wav", label="ang"),  # duplicate id (line 3)
        Utterance(id="gone", audio="missing.wav", label="ang"),  # missing audio (line 4)
        Utterance(id="enc", audio="a.wav", label="ang", text="caf\ufffd"),  # unreadable transcript
        Utterance(id="seg", audio="a.wav", label="ang", start=2.0, end=1.0),
        Utterance(id="lab", audio="a.wav", label="fru"),  # outside iemocap4
        Utterance(id="txt", label="ang", text="text only"),  # no audio: warning
    ]
    path = _write(tmp_path, rows)
    report = validate_manifest(read_manifest(path, strict=False), label_set=load_label_set("iemocap4"))
    assert not report.ok
    errors = {p.kind: p for p in report.errors}
    assert set(errors) == {
        "duplicate id",
        "missing audio",
        "unreadable transcript",
        "bad segment",
        "label outside label set",
    }
    assert errors["duplicate id"].rows == [f"{path}:3 a (first at {path}:2)"]
    assert errors["missing audio"].rows == [f"{path}:4 gone -> {tmp_path / 'missing.wav'}"]
    assert "U+FFFD" in errors["unreadable transcript"].rows[0]
    assert errors["label outside label set"].rows == [f"{path}:7 lab ('fru')"]
    assert "--drop-unknown" in errors["label outside label set"].fix
    assert [p.kind for p in report.warnings] == ["no audio"]
    described = errors["missing audio"].describe()
    assert described.startswith("missing audio: 1 rows:") and "Fix:" in described


def test_drop_unknown_turns_label_errors_into_warnings(tmp_path: Path) -> None:
    path = _write(tmp_path, [Utterance(id="a", label="fru"), Utterance(id="b", label="ang")])
    report = validate_manifest(
        read_manifest(path, strict=False), label_set=load_label_set("iemocap4"), drop_unknown=True, check_audio=False
    )
    assert report.ok
    assert {p.kind for p in report.warnings} == {"label outside label set", "no audio"}


def test_empty_manifest_is_an_error(tmp_path: Path) -> None:
    report = validate_manifest(read_manifest(_write(tmp_path, []), strict=False))
    assert [p.kind for p in report.errors] == ["empty manifest"]


def test_protocol_grouping_problems_are_reported(tmp_path: Path) -> None:
    rows = [Utterance(id=f"u{i}", label="ang", speaker="Ses01F", session=f"Ses0{1 + i % 2}") for i in range(4)]
    report = validate_manifest(
        read_manifest(_write(tmp_path, rows), strict=False), check_audio=False, protocol="iemocap-loso"
    )
    assert [p.kind for p in report.errors] == ["protocol iemocap-loso"]
    assert "Ses01F in Ses01, Ses02" in report.errors[0].rows[0]


def _corpus_manifest(tmp_path: Path, corpus: str, labels: list[str | None], label_set: str | None = None) -> Path:
    path = tmp_path / f"{corpus}.jsonl"
    write_manifest(
        path,
        ManifestHeader(corpus=corpus, root=str(tmp_path), label_set=label_set),
        [Utterance(id=f"u{i}", label=label) for i, label in enumerate(labels)],
    )
    return path


def _validate_default(path: Path, **kwargs: object) -> ValidationReport:
    """What ``ser manifest validate`` does without --label-set."""
    manifest = read_manifest(path, strict=False)
    choice = choose_label_set(manifest, None)
    return validate_manifest(
        manifest, label_set=choice.label_set, check_audio=False, default_label_set=choice.source == "default", **kwargs
    )  # type: ignore[arg-type]


def test_without_a_label_set_the_corpus_default_catches_unknown_labels(tmp_path: Path) -> None:
    path = _corpus_manifest(tmp_path, "ravdess", ["angry", "calm", "banana", "sad"])
    report = _validate_default(path)
    assert not report.ok
    (error,) = report.errors
    assert error.kind == "label unknown to the corpus"
    assert error.rows == [f"{path}:4 u2 ('banana')"]
    assert "its labels: neutral, calm, happy, sad, angry, fearful, disgust, surprised" in error.fix
    assert report.label_counts == {"ang": 1, "cal": 1, "sad": 1}  # ravdess8 class names
    assert _validate_default(path, drop_unknown=True).ok


def test_labels_the_default_set_drops_are_warnings_not_errors(tmp_path: Path) -> None:
    path = _corpus_manifest(tmp_path, "iemocap", ["ang", "fru", "xxx", "exc", None, "frustrated"])
    report = _validate_default(path)
    assert {p.kind: p.rows for p in report.errors} == {"label unknown to the corpus": [f"{path}:7 u5 ('frustrated')"]}
    warnings = {p.kind: p.rows for p in report.warnings}
    assert warnings["label outside the default label set"] == [f"{path}:3 u1 ('fru')", f"{path}:4 u2 ('xxx')"]
    assert warnings["no label"] == [f"{path}:6 u4"]
    assert report.label_counts == {"ang": 1, "hap": 1}


def test_a_header_label_set_is_checked_strictly(tmp_path: Path) -> None:
    path = _corpus_manifest(tmp_path, "iemocap", ["ang", "fru"], label_set="iemocap4")
    report = _validate_default(path)
    assert [(p.kind, p.rows) for p in report.errors] == [("label outside label set", [f"{path}:3 u1 ('fru')"])]


def test_no_default_for_unknown_corpora(tmp_path: Path) -> None:
    path = _corpus_manifest(tmp_path, "toy", ["banana"])
    report = _validate_default(path)
    assert report.ok and report.label_counts == {"banana": 1}
