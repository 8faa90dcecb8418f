"""Tests of the MELD adapter on a fake tree and on the real train/dev annotation CSVs."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora import get_adapter
from ser.manifests.corpora.meld import scan
from ser.manifests.schema import ManifestError, read_manifest
from tests.fakes.meld import HEADER, make_meld_tree, write_meld_csv

ALL_IDS = [
    "train_dia0_utt0",
    "train_dia0_utt1",
    "train_dia1_utt0",
    "train_dia1_utt1",
    "validation_dia0_utt0",
    "validation_dia0_utt1",
    "test_dia0_utt0",
    "test_dia0_utt1",
]


def _row(dialogue: str = "0", utterance: str = "0", text: str = "Hi.") -> list[str]:
    return ["1", text, "Ross", "neutral", "neutral", dialogue, utterance, "1", "1", "00:00:01,000", "00:00:02,000"]


def test_registered_under_meld() -> None:
    assert get_adapter("meld") is scan


def test_ids_are_qualified_by_split_and_unique(tmp_path: Path) -> None:
    result = scan(make_meld_tree(tmp_path))
    ids = [u.id for u in result.utterances]
    assert ids == ALL_IDS
    assert len(set(ids)) == len(ids)
    assert {u.split for u in result.utterances} == {"train", "validation", "test"}
    by_id = {u.id: u for u in result.utterances}
    assert by_id["train_dia0_utt0"].text != by_id["validation_dia0_utt0"].text
    assert by_id["validation_dia0_utt0"].dialog == "validation_dia0"
    assert by_id["test_dia0_utt1"].dialog == "test_dia0"


def test_fields_of_one_row(tmp_path: Path) -> None:
    utt = scan(make_meld_tree(tmp_path)).utterances[0]
    assert utt.id == "train_dia0_utt0"
    assert utt.audio == "train_splits/dia0_utt0.wav"
    assert utt.text == "So I\u2019m the one who booked the whole trip."
    assert utt.label == "neutral"
    assert utt.speaker == "Chandler"
    assert utt.dialog == "train_dia0"
    assert utt.split == "train"
    assert utt.lang == "en"
    assert utt.start is None and utt.end is None
    assert utt.extra == {
        "sentiment": "neutral",
        "season": 8,
        "episode": 21,
        "start_time": "00:16:16,059",
        "end_time": "00:16:21,731",
        "official_split": "train",
        "sr_no": 1,
    }


def test_quoting_labels_speakers_and_official_splits(tmp_path: Path) -> None:
    by_id = {u.id: u for u in scan(make_meld_tree(tmp_path)).utterances}
    assert by_id["train_dia0_utt1"].text == 'Wait, you said "never", right?'
    assert by_id["train_dia0_utt1"].speaker == "Monica"
    assert by_id["train_dia1_utt0"].text == "That\u2019s it, I\u2019m done!"
    assert by_id["validation_dia0_utt1"].label == "disgust"
    assert by_id["validation_dia0_utt1"].extra["sentiment"] == "negative"
    assert by_id["validation_dia0_utt0"].extra["official_split"] == "dev"
    assert by_id["test_dia0_utt0"].extra["official_split"] == "test"
    assert [u.label for u in by_id.values()] == [
        "neutral",
        "surprise",
        "anger",
        "joy",
        "sadness",
        "disgust",
        "fear",
        "neutral",
    ]


def test_missing_clip_is_kept_without_audio_and_counted(tmp_path: Path) -> None:
    result = scan(make_meld_tree(tmp_path))
    by_id = {u.id: u for u in result.utterances}
    assert by_id["train_dia1_utt0"].audio is None
    assert by_id["train_dia1_utt0"].text == "That\u2019s it, I\u2019m done!"
    assert result.skipped == Counter()
    assert result.kept == Counter({"no clip, kept as a text-only row": 1})
    assert "no clip, kept as a text-only row: train_splits/dia1_utt0.mp4" in result.notes


def test_require_audio_drops_rows_without_clip(tmp_path: Path) -> None:
    result = scan(make_meld_tree(tmp_path), require_audio=True)
    assert [u.id for u in result.utterances] == [i for i in ALL_IDS if i != "train_dia1_utt0"]
    assert all(u.audio is not None for u in result.utterances)
    assert result.skipped == Counter({"no clip (--require-audio)": 1})
    assert result.kept == Counter()


def test_clip_folders_under_meld_raw(tmp_path: Path) -> None:
    by_id = {u.id: u for u in scan(make_meld_tree(tmp_path)).utterances}
    assert by_id["test_dia0_utt0"].audio == "MELD.Raw/output_repeated_splits_test/dia0_utt0.wav"
    assert by_id["validation_dia0_utt1"].audio == "dev_splits_complete/dia0_utt1.wav"


def test_wav_preferred_over_mp4_and_mp4_accepted(tmp_path: Path) -> None:
    root = make_meld_tree(tmp_path)
    (root / "train_splits" / "dia0_utt0.mp4").write_bytes(b"not really a video")
    (root / "train_splits" / "dia1_utt0.mp4").write_bytes(b"not really a video")
    result = scan(root)
    by_id = {u.id: u for u in result.utterances}
    assert by_id["train_dia0_utt0"].audio == "train_splits/dia0_utt0.wav"
    assert by_id["train_dia1_utt0"].audio == "train_splits/dia1_utt0.mp4"
    assert result.skipped == Counter() and result.kept == Counter()


def test_without_clips_every_row_is_text_only(tmp_path: Path) -> None:
    result = scan(make_meld_tree(tmp_path, with_clips=False))
    assert [u.id for u in result.utterances] == ALL_IDS
    assert all(u.audio is None and u.text for u in result.utterances)
    assert result.skipped == Counter()
    assert result.kept == Counter({"no clip, kept as a text-only row": 8})
    assert any(n.startswith("train: no clip folder") for n in result.notes)
    assert scan(tmp_path, require_audio=True).utterances == []


def test_a_single_csv_is_enough(tmp_path: Path) -> None:
    root = make_meld_tree(tmp_path)
    (root / "train_sent_emo.csv").unlink()
    (root / "test_sent_emo.csv").unlink()
    assert [u.id for u in scan(root).utterances] == ["validation_dia0_utt0", "validation_dia0_utt1"]


def test_no_csv_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"train_sent_emo\.csv, dev_sent_emo\.csv, test_sent_emo\.csv"):
        scan(tmp_path)


def test_non_integer_id_names_file_and_line(tmp_path: Path) -> None:
    write_meld_csv(tmp_path / "dev_sent_emo.csv", [_row(), _row("x1", "0")])
    with pytest.raises(ManifestError, match=r"dev_sent_emo\.csv:3: Dialogue_ID is 'x1', not an integer"):
        scan(tmp_path)


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    write_meld_csv(tmp_path / "train_sent_emo.csv", [_row(text="two\nlines"), _row("0", "one")])
    with pytest.raises(ManifestError, match=r"train_sent_emo\.csv:4: Utterance_ID is 'one'"):
        scan(tmp_path)


def test_multiline_utterance_is_kept(tmp_path: Path) -> None:
    write_meld_csv(tmp_path / "train_sent_emo.csv", [_row(text="two\nlines"), _row("0", "1")])
    assert [u.text for u in scan(tmp_path).utterances] == ["two\nlines", "Hi."]


def test_missing_column_names_it(tmp_path: Path) -> None:
    header = ",".join(h for h in HEADER if h != "Sentiment")
    (tmp_path / "test_sent_emo.csv").write_text(header + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"test_sent_emo\.csv:1: missing column\(s\) Sentiment"):
        scan(tmp_path)


def test_short_row_names_file_and_line(tmp_path: Path) -> None:
    path = write_meld_csv(tmp_path / "train_sent_emo.csv", [_row()])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("2,Unquoted, comma,Ross,joy,positive,0,1,1,1\r\n")
    with pytest.raises(ManifestError, match=r"train_sent_emo\.csv:3: 10 fields but the header has 11"):
        scan(tmp_path)


def test_non_utf8_csv_is_an_unreadable_transcript(tmp_path: Path) -> None:
    path = tmp_path / "train_sent_emo.csv"
    path.write_bytes((",".join(HEADER) + "\r\n1,caf\xe9,Ross,joy,positive,0,0,1,1,a,b\r\n").encode("latin-1"))
    with pytest.raises(ManifestError, match=r"train_sent_emo\.csv: unreadable transcript"):
        scan(tmp_path)


def test_byte_order_mark_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = write_meld_csv(tmp_path / "train_sent_emo.csv", [_row(), _row("0", "1")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"\r\n\r\n")
    assert [u.id for u in scan(tmp_path).utterances] == ["train_dia0_utt0", "train_dia0_utt1"]


def test_duplicate_row_in_one_split_is_skipped_and_counted(tmp_path: Path) -> None:
    write_meld_csv(tmp_path / "train_sent_emo.csv", [_row(), _row(text="Again.")])
    result = scan(tmp_path)
    assert [u.text for u in result.utterances] == ["Hi."]
    assert result.skipped["duplicate dialogue/utterance row"] == 1


def test_build_manifest_from_fake_tree(tmp_path: Path) -> None:
    root = make_meld_tree(tmp_path / "meld")
    report = build_manifest("meld", root, tmp_path / "meld.jsonl")
    assert report.written == 8
    lines = report.lines()
    assert "  kept 1: no clip, kept as a text-only row" in lines
    assert not any(line.startswith("  skipped") for line in lines)  # the text-only row is written, not skipped
    dropped = build_manifest("meld", root, tmp_path / "meld-audio.jsonl", options={"require_audio": True})
    assert dropped.written == 7
    assert "  skipped 1: no clip (--require-audio)" in dropped.lines()
    manifest = read_manifest(tmp_path / "meld.jsonl")
    by_id = manifest.by_id()
    assert by_id["train_dia0_utt0"].duration == pytest.approx(0.1)
    assert by_id["train_dia1_utt0"].duration is None


def test_real_meld_csvs(tmp_path: Path, meld_root: Path) -> None:
    for csv_file in sorted(meld_root.glob("*.csv")):
        shutil.copy(csv_file, tmp_path / csv_file.name)
    result = scan(tmp_path)
    splits = Counter(u.split for u in result.utterances)
    assert splits["train"] == 9989
    assert splits["validation"] == 1109
    ids = [u.id for u in result.utterances]
    assert len(set(ids)) == len(ids)
    assert {u.label for u in result.utterances} == {"neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"}
    assert {u.extra["sentiment"] for u in result.utterances} == {"neutral", "positive", "negative"}
    assert all(u.text for u in result.utterances)
    assert all(u.speaker for u in result.utterances)
    assert result.kept["no clip, kept as a text-only row"] == len(result.utterances)
    assert not result.skipped
    first = result.utterances[0]
    assert first.id == "train_dia0_utt0"
    assert "\u2019" in first.text
    assert first.extra["start_time"] == "00:16:16,059"
