"""Tests of the MSP-Podcast adapter on a fake tree."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from ser.manifests.corpora import get_adapter
from ser.manifests.corpora.msp_podcast import scan
from ser.manifests.schema import ManifestError
from tests.fakes import write_tone
from tests.fakes.msp_podcast import HEADER, make_msp_tree

PRESENT_IDS = [
    "MSP-PODCAST_0002_0001",
    "MSP-PODCAST_0002_0002",
    "MSP-PODCAST_0003_0001",
    "MSP-PODCAST_0004_0001",
    "MSP-PODCAST_0005_0001",
    "MSP-PODCAST_0006_0001",
]


def _label_tree(root: Path, rows: list[str]) -> Path:
    """A tree whose label file holds ``rows`` and whose Audios/ holds every file they name."""
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    for row in rows:
        write_tone(root / "Audios" / row.split(",", 1)[0], seconds=0.05)
    return root


def test_registered_under_msp_podcast() -> None:
    assert get_adapter("msp-podcast") is scan


def test_rows_ids_and_missing_audio(tmp_path: Path) -> None:
    result = scan(make_msp_tree(tmp_path))
    assert [u.id for u in result.utterances] == PRESENT_IDS
    assert result.skipped == Counter({"missing audio": 1})
    assert "missing audio: Audios/MSP-PODCAST_0007_0001.wav" in result.notes


def test_fields_of_one_row(tmp_path: Path) -> None:
    utt = scan(make_msp_tree(tmp_path)).utterances[0]
    assert utt.id == "MSP-PODCAST_0002_0001"
    assert utt.audio == "Audios/MSP-PODCAST_0002_0001.wav"
    assert utt.label == "anger"
    assert utt.speaker == "msp12"
    assert utt.gender == "F"
    assert utt.split == "train"
    assert utt.lang == "en"
    assert utt.text == "I told you that already, twice!"
    assert utt.extra == {
        "arousal": 5.5,
        "valence": 2.0,
        "dominance": 5.25,
        "official_split": "Train",
        "speaker_raw": "12",
    }


def test_labels_splits_speakers_and_genders(tmp_path: Path) -> None:
    result = scan(make_msp_tree(tmp_path))
    assert [u.label for u in result.utterances] == [
        "anger",
        "happiness",
        "sadness",
        "neutral",
        "no_agreement",
        "surprise",
    ]
    assert [u.split for u in result.utterances] == ["train", "train", "validation", "test", "test2", "test3"]
    assert [u.extra["official_split"] for u in result.utterances] == [
        "Train",
        "Train",
        "Development",
        "Test1",
        "Test2",
        "Test3",
    ]
    assert [u.speaker for u in result.utterances] == ["msp12", "msp12", None, "msp27", "msp31", "msp44"]
    assert [u.gender for u in result.utterances] == ["F", "F", None, "M", "M", "F"]
    assert result.utterances[3].extra["arousal"] == pytest.approx(3.777778)


def test_unknown_speaker_is_none_and_raw_kept(tmp_path: Path) -> None:
    utt = {u.id: u for u in scan(make_msp_tree(tmp_path)).utterances}["MSP-PODCAST_0003_0001"]
    assert utt.speaker is None
    assert utt.extra["speaker_raw"] == "Unknown"


def test_transcripts(tmp_path: Path) -> None:
    result = scan(make_msp_tree(tmp_path))
    texts = {u.id: u.text for u in result.utterances}
    assert texts["MSP-PODCAST_0002_0002"] == "That\u2019s wonderful news."
    assert texts["MSP-PODCAST_0006_0001"] is None
    assert "1 utterances have no (or an empty) file in Transcripts/" in result.notes


def test_no_transcript_folder_gives_no_text(tmp_path: Path) -> None:
    root = make_msp_tree(tmp_path)
    shutil.rmtree(root / "Transcripts")
    result = scan(root)
    assert [u.text for u in result.utterances] == [None] * 6
    assert result.notes == ["missing audio: Audios/MSP-PODCAST_0007_0001.wav"]


def test_old_label_file_spelling(tmp_path: Path) -> None:
    root = make_msp_tree(tmp_path, old_spelling=True)
    assert (root / "Labels" / "labels_concensus.csv").is_file()
    assert not (root / "Labels" / "labels_consensus.csv").exists()
    assert [u.id for u in scan(root).utterances] == PRESENT_IDS


def test_both_spellings_prefer_the_new_one(tmp_path: Path) -> None:
    root = make_msp_tree(tmp_path)
    (root / "Labels" / "labels_concensus.csv").write_text(
        HEADER + "\nMSP-PODCAST_0002_0001.wav,S,1.0,1.0,1.0,12,Female,Train\n", encoding="utf-8"
    )
    result = scan(root)
    assert [u.id for u in result.utterances] == PRESENT_IDS
    assert result.utterances[0].label == "anger"
    assert any("labels_consensus.csv" in n and "labels_concensus.csv" in n for n in result.notes)


def test_audio_folder_may_be_called_audio(tmp_path: Path) -> None:
    root = make_msp_tree(tmp_path)
    (root / "Audios").rename(root / "Audio")
    result = scan(root)
    assert result.utterances[0].audio == "Audio/MSP-PODCAST_0002_0001.wav"
    assert len(result.utterances) == 6


def test_every_emotion_code_is_decoded(tmp_path: Path) -> None:
    codes = {
        "A": "anger",
        "H": "happiness",
        "S": "sadness",
        "U": "surprise",
        "F": "fear",
        "D": "disgust",
        "C": "contempt",
        "N": "neutral",
        "O": "other",
        "X": "no_agreement",
    }
    rows = [f"MSP-PODCAST_0100_{i:04d}.wav,{code},4,4,4,7,Male,Train" for i, code in enumerate(codes)]
    result = scan(_label_tree(tmp_path, rows))
    assert [u.label for u in result.utterances] == list(codes.values())


def test_later_test_sets_and_unknown_values(tmp_path: Path) -> None:
    rows = [
        "MSP-PODCAST_0200_0001.wav,N,4,4,4,7,Male,Test4",
        "MSP-PODCAST_0200_0002.wav,N,4,4,4,7,Male,Holdout",
        "MSP-PODCAST_0200_0003.wav,Q,4,4,4,7,Male,Train",
        "MSP-PODCAST_0200_0004.wav,n,4,4,4,unknown,Male,Train",
    ]
    result = scan(_label_tree(tmp_path, rows))
    assert [(u.id, u.split) for u in result.utterances] == [
        ("MSP-PODCAST_0200_0001", "test4"),
        ("MSP-PODCAST_0200_0004", "train"),
    ]
    assert result.utterances[1].label == "neutral"
    assert result.utterances[1].speaker is None
    assert result.skipped == Counter({"unknown Split_Set value": 1, "unknown EmoClass code": 1})


def test_no_label_file_names_both_spellings(tmp_path: Path) -> None:
    (tmp_path / "Audios").mkdir()
    with pytest.raises(ManifestError, match=r"labels_consensus\.csv or Labels/labels_concensus\.csv"):
        scan(tmp_path)


def test_no_audio_folder(tmp_path: Path) -> None:
    root = make_msp_tree(tmp_path)
    shutil.rmtree(root / "Audios")
    with pytest.raises(ManifestError, match="no audio folder"):
        scan(root)


def test_non_numeric_score_names_file_and_line(tmp_path: Path) -> None:
    root = _label_tree(
        tmp_path,
        ["MSP-PODCAST_0300_0001.wav,N,4,4,4,7,Male,Train", "MSP-PODCAST_0300_0002.wav,N,4,high,4,7,Male,Train"],
    )
    with pytest.raises(ManifestError, match=r"labels_consensus\.csv:3: EmoVal is 'high', not a number"):
        scan(root)


def test_missing_column_names_it(tmp_path: Path) -> None:
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Audios").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text(HEADER.replace(",Split_Set", "") + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"labels_consensus\.csv:1: missing column\(s\) Split_Set"):
        scan(tmp_path)
