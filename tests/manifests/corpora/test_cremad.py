"""The CREMA-D adapter: file-name codes, demographics join, perceived voice votes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora import cremad
from ser.manifests.corpora.base import CorpusScan
from ser.manifests.labels import load_label_set
from ser.manifests.schema import ManifestError, Utterance, read_manifest
from tests.fakes import write_tone
from tests.fakes.cremad import CLIPS, make_cremad_tree


def by_id(result: CorpusScan) -> dict[str, Utterance]:
    return {u.id: u for u in result.utterances}


def test_file_names_are_decoded(tmp_path: Path) -> None:
    result = cremad.scan(make_cremad_tree(tmp_path))
    rows = by_id(result)
    assert sorted(rows) == sorted(CLIPS)
    row = rows["1001_IEO_HAP_LO"]
    assert row.audio == "AudioWAV/1001_IEO_HAP_LO.wav"
    assert row.label == "happy"
    assert row.text == "It's eleven o'clock"
    assert row.speaker == "1001"
    assert row.script == "IEO"
    assert row.lang == "en"
    assert row.extra["level"] == "low" and row.extra["sentence"] == "IEO"
    assert rows["1001_IEO_HAP_HI"].extra["level"] == "high"
    assert rows["1003_IOM_DIS_MD"].extra["level"] == "medium"
    assert rows["1003_IOM_DIS_MD"].text == "I'm on my way to the meeting"
    assert rows["1001_DFA_ANG_XX"].label == "anger"
    assert rows["1001_DFA_ANG_XX"].extra["level"] == "unspecified"
    assert rows["1001_DFA_ANG_XX"].text == "Don't forget a jacket"
    assert {rows[c].label for c in CLIPS} == {"anger", "disgust", "fear", "happy", "neutral", "sad"}
    assert all(u.split is None for u in result.utterances)
    assert not result.skipped


def test_demographics_are_joined(tmp_path: Path) -> None:
    rows = by_id(cremad.scan(make_cremad_tree(tmp_path)))
    first = rows["1001_DFA_ANG_XX"]
    assert first.gender == "M"
    assert (first.extra["age"], first.extra["race"], first.extra["ethnicity"]) == (51, "Caucasian", "Not Hispanic")
    assert rows["1002_TIE_SAD_XX"].gender == "F"
    assert rows["1002_TIE_SAD_XX"].extra["age"] == 21
    assert rows["1003_WSI_FEA_XX"].extra["race"] == "Asian"


def test_voice_votes_are_decoded(tmp_path: Path) -> None:
    rows = by_id(cremad.scan(make_cremad_tree(tmp_path)))
    perceived = rows["1001_IEO_HAP_LO"]
    assert perceived.label == "happy"
    assert perceived.extra["voice_vote"] == "neutral"
    assert perceived.extra["voice_level"] == pytest.approx(71.67)
    tie = rows["1003_IOM_DIS_MD"]
    assert tie.extra["voice_vote"] == "anger:neutral"
    assert tie.extra["voice_level"] == pytest.approx(33.33)
    assert rows["1001_DFA_ANG_XX"].extra["voice_vote"] == "anger"
    assert rows["1003_WSI_FEA_XX"].extra["voice_vote"] == "fear"
    assert cremad.decode_vote("S:D") == "sad:disgust"
    assert cremad.decode_vote("X") is None
    assert cremad.decode_vote("") is None


def test_without_metadata(tmp_path: Path) -> None:
    result = cremad.scan(make_cremad_tree(tmp_path, with_metadata=False))
    row = by_id(result)["1001_IEO_HAP_LO"]
    assert row.gender is None
    assert row.extra == {"level": "low", "sentence": "IEO"}
    assert len(result.utterances) == len(CLIPS)
    assert any("VideoDemographics.csv" in note for note in result.notes)
    assert any("summaryTable.csv" in note for note in result.notes)


def test_bad_names_and_unknown_codes_are_counted(tmp_path: Path) -> None:
    root = make_cremad_tree(tmp_path)
    for name in ("1001_XYZ_ANG_XX.wav", "1001_DFA_BOR_XX.wav", "1001_DFA_ANG_ZZ.wav", "notes.wav", "1001_DFA_ANG.wav"):
        write_tone(root / "AudioWAV" / name, seconds=0.05)
    result = cremad.scan(root)
    assert len(result.utterances) == len(CLIPS)
    assert result.skipped["unknown code in file name"] == 3
    assert result.skipped["file name is not ActorID_Sentence_Emotion_Level"] == 2
    assert any("AudioWAV/1001_XYZ_ANG_XX.wav" in note for note in result.notes)


def test_metadata_gaps_and_bad_votes_are_counted(tmp_path: Path) -> None:
    root = make_cremad_tree(tmp_path)
    write_tone(root / "AudioWAV" / "1050_TSI_NEU_XX.wav", seconds=0.05)
    summary = root / "summaryTable.csv"
    summary.write_text(summary.read_text(encoding="utf-8").replace('"F","45"', '"Q","NA"'), encoding="utf-8")
    result = cremad.scan(root)
    rows = by_id(result)
    assert rows["1050_TSI_NEU_XX"].gender is None
    assert rows["1050_TSI_NEU_XX"].text == "The surface is slick"
    assert result.skipped["actor not in VideoDemographics.csv"] == 1
    assert result.skipped["clip not in summaryTable.csv"] == 1
    fear = rows["1003_WSI_FEA_XX"]
    assert "voice_vote" not in fear.extra and "voice_level" not in fear.extra
    assert result.skipped["unknown VoiceVote in summaryTable.csv (left out)"] == 1
    assert result.skipped["unreadable VoiceLevel in summaryTable.csv (left out)"] == 1


def test_wavs_directly_in_root(tmp_path: Path) -> None:
    root = make_cremad_tree(tmp_path)
    rows = by_id(cremad.scan(root / "AudioWAV"))
    assert sorted(rows) == sorted(CLIPS)
    assert rows["1002_ITS_NEU_XX"].audio == "1002_ITS_NEU_XX.wav"
    assert rows["1002_ITS_NEU_XX"].text == "I think I've seen this before"
    assert rows["1002_ITS_NEU_XX"].gender is None


def test_mp3_only_when_there_is_no_wav(tmp_path: Path) -> None:
    root = tmp_path / "crema"
    (root / "AudioMP3").mkdir(parents=True)
    for stem in ("1001_TAI_SAD_XX", "1002_MTI_HAP_XX"):
        (root / "AudioMP3" / f"{stem}.mp3").write_bytes(b"\xff\xfb" + bytes(64))
    rows = by_id(cremad.scan(root))
    assert rows["1001_TAI_SAD_XX"].audio == "AudioMP3/1001_TAI_SAD_XX.mp3"
    assert rows["1002_MTI_HAP_XX"].text == "Maybe tomorrow it will be cold"
    make_cremad_tree(root)
    result = cremad.scan(root)
    assert sorted(by_id(result)) == sorted(CLIPS)
    assert all(u.audio.endswith(".wav") for u in result.utterances)


def test_wrong_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no CREMA-D audio"):
        cremad.scan(tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        cremad.scan(tmp_path / "missing")


def test_build_manifest_round_trip_with_cremad6(tmp_path: Path) -> None:
    root = make_cremad_tree(tmp_path / "crema")
    output = tmp_path / "cremad.jsonl"
    cremad6 = load_label_set("cremad6")
    report = build_manifest("cremad", root, output, label_set=cremad6)
    assert report.written == report.scanned == len(CLIPS)
    manifest = read_manifest(output)
    assert manifest.header.corpus == "cremad" and manifest.header.label_set == "cremad6"
    rows = manifest.by_id()
    assert sorted(rows) == sorted(CLIPS)
    row = rows["1001_IEO_HAP_LO"]
    assert (row.label, row.gender, row.speaker, row.script) == ("happy", "M", "1001", "IEO")
    assert row.extra == {
        "level": "low",
        "sentence": "IEO",
        "age": 51,
        "race": "Caucasian",
        "ethnicity": "Not Hispanic",
        "voice_vote": "neutral",
        "voice_level": 71.67,
    }
    assert row.duration == pytest.approx(0.1)
    assert manifest.audio_path(row).is_file()
    assert [cremad6.class_of(rows[c]) for c in CLIPS] == ["ang", "hap", "hap", "sad", "neu", "fea", "dis"]
