"""IEMOCAP adapter against the miniature release in :mod:`tests.fakes.iemocap`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora import get_adapter
from ser.manifests.corpora.base import CorpusScan
from ser.manifests.corpora.iemocap import clean_text, scan
from ser.manifests.labels import apply_label_set, load_label_set
from ser.manifests.schema import ManifestError, Utterance, read_manifest
from tests.fakes.iemocap import make_iemocap_tree


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return make_iemocap_tree(tmp_path)


@pytest.fixture
def scanned(release: Path) -> CorpusScan:
    return scan(release)


def _rows(result: CorpusScan) -> dict[str, Utterance]:
    return {u.id: u for u in result.utterances}


def test_registry_points_at_adapter() -> None:
    assert get_adapter("iemocap") is scan


def test_one_row_per_evaluated_turn_with_wav(scanned: CorpusScan) -> None:
    assert [u.id for u in scanned.utterances] == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_M000",
        "Ses01F_impro01_F001",
        "Ses01M_script01_1_F000",
        "Ses01M_script01_1_M000",
        "Ses02F_script01_2_F000",
        "Ses02F_script01_2_M000",
        "Ses02M_impro05a_F000",
        "Ses02M_impro05a_M000",
        "Ses02M_impro05a_M001",
    ]
    assert sorted(u.label for u in scanned.utterances) == [
        "ang",
        "exc",
        "exc",
        "fru",
        "hap",
        "neu",
        "neu",
        "sad",
        "sad",
        "xxx",
    ]


def test_row_fields(scanned: CorpusScan) -> None:
    row = _rows(scanned)["Ses01F_impro01_F000"]
    assert row.audio == "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    assert (row.label, row.speaker, row.gender, row.session) == ("neu", "Ses01F", "F", "Ses01")
    assert (row.dialog, row.script, row.lang, row.text) == ("Ses01F_impro01", None, "en", "Excuse me.")
    assert row.start is None and row.end is None
    assert row.extra["dialog_start"] == pytest.approx(6.2901)
    assert row.extra["dialog_end"] == pytest.approx(8.2357)
    assert row.extra["improvised"] is True
    assert row.extra["scenario"] == "impro01"
    assert "text_raw" not in row.extra


def test_speaker_is_the_turn_gender_not_the_dialog_letter(scanned: CorpusScan) -> None:
    rows = _rows(scanned)
    male_turn = rows["Ses01F_impro01_M000"]
    assert (male_turn.speaker, male_turn.gender) == ("Ses01M", "M")
    female_turn = rows["Ses02M_impro05a_F000"]
    assert (female_turn.speaker, female_turn.gender, female_turn.session) == ("Ses02F", "F", "Ses02")
    assert {u.speaker for u in scanned.utterances} == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"}


def test_script_family_and_improvisation(scanned: CorpusScan) -> None:
    rows = _rows(scanned)
    assert rows["Ses01M_script01_1_F000"].script == "script01"
    assert rows["Ses02F_script01_2_M000"].script == "script01"
    scripted = rows["Ses02F_script01_2_F000"]
    assert scripted.extra["improvised"] is False
    assert "scenario" not in scripted.extra
    improvised = rows["Ses02M_impro05a_F000"]
    assert improvised.script is None
    assert improvised.extra["scenario"] == "impro05a"


def test_valence_arousal_dominance_in_header_order(scanned: CorpusScan) -> None:
    extra = _rows(scanned)["Ses02M_impro05a_F000"].extra
    assert (extra["valence"], extra["arousal"], extra["dominance"]) == (1.5, 4.0, 4.5)
    assert all(isinstance(extra[k], float) for k in ("valence", "arousal", "dominance"))


def test_transcript_cleaning(scanned: CorpusScan) -> None:
    rows = _rows(scanned)
    laughing = rows["Ses01F_impro01_M000"]
    assert laughing.text == "Do you have your forms?"
    assert laughing.extra["text_raw"] == "Do you have  your forms? [LAUGHTER]"
    breathing = rows["Ses01F_impro01_F001"]
    assert breathing.text == "Yeah, right here."
    assert breathing.extra["text_raw"] == "[BREATHING] Yeah, right here."
    only_noise = rows["Ses02M_impro05a_M000"]
    assert only_noise.text is None
    assert only_noise.extra["text_raw"] == "[LAUGHTER]"


def test_clean_text_ignores_whitespace_only_changes() -> None:
    assert clean_text("  Hello   there ") == ("Hello there", None)
    assert clean_text("a [LIPSMACK]  b") == ("a b", "a [LIPSMACK]  b")
    assert clean_text("[GARBAGE]") == (None, "[GARBAGE]")


def test_turn_without_transcript_line_is_kept_and_counted(scanned: CorpusScan) -> None:
    row = _rows(scanned)["Ses02M_impro05a_M001"]
    assert row.text is None and row.label == "neu"
    assert scanned.skipped["no transcript line"] == 1
    assert "no transcript line: Ses02M_impro05a_M001" in scanned.notes


def test_mocap_paths(scanned: CorpusScan) -> None:
    rows = _rows(scanned)
    assert rows["Ses01F_impro01_F000"].extra["mocap"] == {
        "rotated": "Session1/sentences/MOCAP_rotated/Ses01F_impro01/Ses01F_impro01_F000.txt",
        "head": "Session1/sentences/MOCAP_head/Ses01F_impro01/Ses01F_impro01_F000.txt",
        "hand": "Session1/sentences/MOCAP_hand/Ses01F_impro01/Ses01F_impro01_F000.txt",
    }
    assert rows["Ses01F_impro01_M000"].extra["mocap"] == {
        "head": "Session1/sentences/MOCAP_head/Ses01F_impro01/Ses01F_impro01_M000.txt"
    }
    assert "mocap" not in rows["Ses02M_impro05a_F000"].extra


def test_unnumbered_transcript_turn_is_skipped_and_counted(scanned: CorpusScan) -> None:
    assert "Ses01F_impro01_FXX0" not in _rows(scanned)
    assert scanned.skipped["transcript turn without a turn number (e.g. FXX0)"] == 1
    assert "transcript turn without a turn number (e.g. FXX0): Ses01F_impro01_FXX0" in scanned.notes


def test_missing_sentence_wav_is_skipped_and_counted(scanned: CorpusScan) -> None:
    assert "Ses01M_script01_1_M001" not in _rows(scanned)
    assert scanned.skipped["missing sentence wav"] == 1
    assert "missing sentence wav: Session1/sentences/wav/Ses01M_script01_1/Ses01M_script01_1_M001.wav" in scanned.notes


def test_transcript_only_turn(release: Path, scanned: CorpusScan) -> None:
    assert "Ses02F_script01_2_M001" not in _rows(scanned)
    assert scanned.skipped["transcript turn without EmoEvaluation entry (use include_unlabelled)"] == 1
    with_unlabelled = scan(release, include_unlabelled=True)
    assert len(with_unlabelled.utterances) == 11
    row = _rows(with_unlabelled)["Ses02F_script01_2_M001"]
    assert (row.label, row.text, row.speaker, row.script) == (None, "Maybe next year.", "Ses02M", "script01")
    assert row.extra["dialog_start"] == pytest.approx(7.0)
    assert "valence" not in row.extra


def test_skip_reasons_are_complete(scanned: CorpusScan) -> None:
    assert dict(scanned.skipped) == {
        "missing sentence wav": 1,
        "no transcript line": 1,
        "transcript turn without a turn number (e.g. FXX0)": 1,
        "transcript turn without EmoEvaluation entry (use include_unlabelled)": 1,
    }


def test_iemocap4_label_set(scanned: CorpusScan) -> None:
    label_set = load_label_set("iemocap4")
    filtered = apply_label_set(scanned.utterances, label_set)
    assert len(filtered.kept) == 8
    assert dict(filtered.dropped) == {"fru": 1, "xxx": 1}
    classes = {u.id: label_set.class_of(u) for u in filtered.kept}
    assert classes["Ses02M_impro05a_M000"] == "hap"
    assert classes["Ses02F_script01_2_F000"] == "hap"
    assert sorted(classes.values()) == ["ang", "hap", "hap", "hap", "neu", "neu", "sad", "sad"]


def test_build_manifest(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifests" / "iemocap.jsonl"
    report = build_manifest("iemocap", release, out, label_set=load_label_set("iemocap4"))
    assert (report.scanned, report.written) == (10, 8)
    assert dict(report.dropped_labels) == {"fru": 1, "xxx": 1}
    manifest = read_manifest(out)
    assert manifest.header.corpus == "iemocap"
    assert manifest.header.label_set == "iemocap4"
    assert len(manifest) == 8
    for utt in manifest:
        assert utt.duration == pytest.approx(0.2, abs=1e-3)
        assert manifest.audio_path(utt).is_file()  # type: ignore[union-attr]
    row = manifest.by_id()["Ses01F_impro01_F000"]
    assert row.extra["mocap"]["head"].endswith("Ses01F_impro01_F000.txt")
    assert row.extra["valence"] == 2.5


def test_subset_of_sessions(release: Path) -> None:
    for path in sorted((release / "Session2").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (release / "Session2").rmdir()
    result = scan(release)
    assert len(result.utterances) == 5
    assert {u.session for u in result.utterances} == {"Ses01"}


def test_no_sessions_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "Documentation").mkdir()
    with pytest.raises(ManifestError, match=r"no Session1 \.\.\. Session5 folder.*IEMOCAP_full_release"):
        scan(tmp_path)


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="IEMOCAP release root not found"):
        scan(tmp_path / "nowhere")


def test_unreadable_evaluation_file_names_the_file(release: Path) -> None:
    bad = release / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_impro05a.txt"
    bad.write_bytes(b"% [START_TIME - END_TIME]\n[1.0 - 2.0]\t\x80\x81\xc3\x28\tneu\t[1, 2, 3]\n")
    with pytest.raises(ManifestError, match=r"Ses02M_impro05a\.txt: unreadable EmoEvaluation file"):
        scan(release)


def test_malformed_summary_line_is_counted(release: Path) -> None:
    path = release / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    text = path.read_text(encoding="utf-8").replace("[2.0000, 3.5000, 3.5000]", "[2.0000, 3.5000]")
    path.write_text(text, encoding="utf-8")
    result = scan(release)
    assert "Ses01F_impro01_M000" not in _rows(result)
    assert result.skipped["malformed EmoEvaluation summary line"] == 1
    assert any(
        n.startswith("malformed EmoEvaluation summary line: Session1/dialog/EmoEvaluation/") for n in result.notes
    )
