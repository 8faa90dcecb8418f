"""The ESD adapter on a miniature tree with per-speaker transcript encodings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora import esd
from ser.manifests.corpora.base import CorpusScan
from ser.manifests.labels import load_label_set
from ser.manifests.schema import ManifestError, Utterance, read_manifest
from tests.fakes import write_tone
from tests.fakes.esd import (
    DISAGREEING_ID,
    LOOSE_ID,
    SPACED_ID,
    UNPARSABLE_LINE,
    UNTRANSCRIBED_ID,
    make_esd_tree,
)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return make_esd_tree(tmp_path)


def by_id(result: CorpusScan) -> dict[str, Utterance]:
    return {u.id: u for u in result.utterances}


def test_finds_every_clip_with_folder_labels(dataset: Path) -> None:
    result = esd.scan(dataset)
    rows = by_id(result)
    assert len(result.utterances) == 4 * 5 * 3 + 1
    assert len(rows) == len(result.utterances)
    assert {u.speaker for u in result.utterances} == {"0001", "0003", "0011", "0016"}
    assert rows["0001_000351"].label == "angry"
    assert rows["0001_000351"].audio == "0001/Angry/train/0001_000351.wav"
    assert rows["0003_001401"].label == "surprise"
    assert rows["0016_000701"].label == "happy"
    assert rows["0011_001051"].label == "sad"
    assert rows["0011_000001"].label == "neutral"


def test_parent_folder_is_detected_and_paths_stay_relative_to_it(dataset: Path) -> None:
    from_parent = esd.scan(dataset.parent)
    from_dataset = esd.scan(dataset)
    assert [u.id for u in from_parent.utterances] == [u.id for u in from_dataset.utterances]
    row = by_id(from_parent)["0011_000321"]
    assert row.audio == "Emotion Speech Dataset/0011/Neutral/test/0011_000321.wav"
    assert (dataset.parent / row.audio).is_file()


def test_splits_are_normalised_and_official_name_kept(dataset: Path) -> None:
    rows = by_id(esd.scan(dataset))
    assert rows["0001_000001"].split == "train"
    assert rows["0001_000001"].extra == {"official_split": "train"}
    assert rows["0001_000301"].split == "validation"
    assert rows["0001_000301"].extra == {"official_split": "evaluation"}
    assert rows["0016_001721"].split == "test"
    assert rows["0016_001721"].extra == {"official_split": "test"}
    loose = rows[LOOSE_ID]
    assert loose.split is None and loose.extra == {}
    assert loose.audio == "0011/Neutral/0011_000002.wav"
    assert loose.label == "neutral"
    splits = [u.split for u in esd.scan(dataset).utterances]
    assert splits.count("train") == splits.count("validation") == splits.count("test") == 20


def test_gb2312_transcript_decodes_to_the_original_chinese(dataset: Path) -> None:
    raw = (dataset / "0001" / "0001.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    rows = by_id(esd.scan(dataset))
    assert rows["0001_000001"].text == "今天早上下了一场大雨。"
    assert rows["0001_000701"].text == "今天早上下了一场大雨。"
    assert rows["0001_001371"].text == "这本书放在桌子上面。"
    assert rows["0001_000651"].text == "我们一起去公园散步吧。"


def test_utf16_transcript_with_bom_decodes_to_the_original_chinese(dataset: Path) -> None:
    assert (dataset / "0003" / "0003.txt").read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    rows = by_id(esd.scan(dataset))
    assert rows["0003_000301"].text == "我们一起去公园散步吧。"
    assert rows["0003_001721"].text == "这本书放在桌子上面。"


def test_utf16_transcript_without_bom_is_recognised(dataset: Path) -> None:
    transcript = dataset / "0003" / "0003.txt"
    transcript.write_bytes(transcript.read_bytes().decode("utf-16").encode("utf-16-le"))
    rows = by_id(esd.scan(dataset))
    assert rows["0003_000321"].text == "这本书放在桌子上面。"


def test_latin1_transcript_keeps_accented_characters(dataset: Path) -> None:
    raw = (dataset / "0016" / "0016.txt").read_bytes()
    assert "é".encode("latin-1") in raw
    rows = by_id(esd.scan(dataset))
    assert rows["0016_000001"].text == "The café opens before noon."
    assert rows["0016_001401"].text == "The café opens before noon."
    assert rows["0016_000651"].text == "Her résumé arrived on Friday."


def test_utf8_transcript(dataset: Path) -> None:
    rows = by_id(esd.scan(dataset))
    assert rows["0011_000001"].text == "The garden gate was left open."
    assert rows[LOOSE_ID].text == "The garden gate was left open."


def test_genders_and_languages(dataset: Path) -> None:
    rows = by_id(esd.scan(dataset))
    assert {(rows[f"{s}_000001"].gender, rows[f"{s}_000001"].lang) for s in ("0001", "0003")} == {("F", "zh")}
    assert (rows["0011_000001"].gender, rows["0011_000001"].lang) == ("M", "en")
    assert (rows["0016_000001"].gender, rows["0016_000001"].lang) == ("F", "en")
    assert esd.GENDERS["0004"] == "M" and esd.GENDERS["0020"] == "M" and esd.GENDERS["0019"] == "F"


def test_languages_filter(dataset: Path) -> None:
    english = esd.scan(dataset, languages=("en",))
    assert {u.speaker for u in english.utterances} == {"0011", "0016"}
    assert {u.lang for u in english.utterances} == {"en"}
    mandarin = esd.scan(dataset, languages=("zh",))
    assert {u.speaker for u in mandarin.utterances} == {"0001", "0003"}
    assert mandarin.skipped["unparsable transcript line"] == 0
    assert {u.speaker for u in esd.scan(dataset, languages="en,zh").utterances} == {"0001", "0003", "0011", "0016"}
    with pytest.raises(ManifestError, match="languages"):
        esd.scan(dataset, languages=("de",))


def test_unparsable_line_is_counted_with_an_example(dataset: Path) -> None:
    result = esd.scan(dataset)
    assert result.skipped["unparsable transcript line"] == 1
    assert any(UNPARSABLE_LINE in note for note in result.notes)


def test_whitespace_separated_line_is_parsed(dataset: Path) -> None:
    assert esd.parse_transcript_line(f"{SPACED_ID}   Some words here   Sad") == (SPACED_ID, "Some words here", "Sad")
    assert esd.parse_transcript_line("0001_000351 他很生气 生气") == ("0001_000351", "他很生气", "生气")
    assert esd.parse_transcript_line("0011_000001 words but no emotion") is None
    rows = by_id(esd.scan(dataset))
    assert rows[SPACED_ID].text == "The café opens before noon."
    assert rows[SPACED_ID].label == "sad"


def test_disagreeing_emotion_keeps_folder_label_and_is_counted(dataset: Path) -> None:
    result = esd.scan(dataset)
    assert result.skipped["transcript emotion disagrees with folder"] == 1
    row = by_id(result)[DISAGREEING_ID]
    assert row.label == "happy"
    assert row.text == "The garden gate was left open."


def test_chinese_emotion_field_never_overrides_the_folder_label(dataset: Path) -> None:
    """Mandarin emotion words only help split a line; a disagreeing one changes neither label nor counts."""
    transcript = dataset / "0001" / "0001.txt"
    lines = transcript.read_bytes().decode("gb2312").split("\r\n")
    angry = "0001_000351"  # Angry/train clip; its line says 生气 (angry)
    (index,) = [i for i, line in enumerate(lines) if line.startswith(angry)]
    assert lines[index].endswith("\t生气")
    lines[index] = f"{angry} 他今天很伤心 伤心"  # space-separated, and the word says sad
    transcript.write_bytes("\r\n".join(lines).encode("gb2312"))
    result = esd.scan(dataset, languages=("zh",))
    rows = by_id(result)
    assert rows[angry].label == "angry"  # the folder decides
    assert rows[angry].text == "他今天很伤心"  # the line was still split, thanks to the emotion word
    assert result.skipped["transcript emotion disagrees with folder"] == 0
    assert result.skipped["unparsable transcript line"] == 0
    assert {u.label for u in result.utterances if u.speaker == "0001"} == {
        "angry",
        "happy",
        "neutral",
        "sad",
        "surprise",
    }


def test_missing_transcript_line_leaves_text_empty(dataset: Path) -> None:
    result = esd.scan(dataset)
    assert by_id(result)[UNTRANSCRIBED_ID].text is None
    assert result.skipped["no transcript line for utterance (text left empty)"] == 1


def test_missing_transcript_file_is_not_fatal(dataset: Path) -> None:
    (dataset / "0016" / "0016.txt").unlink()
    result = esd.scan(dataset)
    rows = [u for u in result.utterances if u.speaker == "0016"]
    assert len(rows) == 15
    assert all(u.text is None for u in rows)
    assert result.skipped["transcript file missing (text left empty)"] == 1
    assert any("0016.txt" in note for note in result.notes)
    assert by_id(result)["0011_000001"].text == "The garden gate was left open."


def test_audio_in_unexpected_places_is_counted(dataset: Path) -> None:
    write_tone(dataset / "0011" / "Bored" / "train" / "0011_009999.wav", seconds=0.05)
    write_tone(dataset / "0011" / "Angry" / "extra" / "0011_009998.wav", seconds=0.05)
    write_tone(dataset / "0011" / "Angry" / "train" / "clip.wav", seconds=0.05)
    result = esd.scan(dataset)
    assert result.skipped["audio file outside an emotion folder"] == 1
    assert result.skipped["audio file in an unknown sub-folder"] == 1
    assert result.skipped["file name is not {spk}_NNNNNN"] == 1
    assert len(result.utterances) == 61


def test_wrong_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no ESD speaker folders"):
        esd.scan(tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        esd.scan(tmp_path / "missing")


def test_build_manifest_round_trip_with_esd5(dataset: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "esd.jsonl"
    report = build_manifest("esd", dataset.parent, output, label_set=load_label_set("esd5"))
    assert report.written == report.scanned == 61
    assert report.skipped["unparsable transcript line"] == 1
    manifest = read_manifest(output)
    assert manifest.header.corpus == "esd" and manifest.header.label_set == "esd5"
    assert len(manifest) == 61
    rows = manifest.by_id()
    assert rows["0001_000001"].text == "今天早上下了一场大雨。"
    assert rows["0016_000001"].text == "The café opens before noon."
    assert rows["0003_000301"].split == "validation"
    assert rows["0003_000301"].extra == {"official_split": "evaluation"}
    assert rows["0011_000351"].duration == pytest.approx(0.1)
    assert manifest.audio_path(rows["0011_000351"]).is_file()
    esd5 = load_label_set("esd5")
    assert {esd5.class_of(u) for u in manifest} == {"neu", "ang", "hap", "sad", "sur"}
    again = tmp_path / "out" / "esd-again.jsonl"
    build_manifest("esd", dataset.parent, again, label_set=esd5)
    assert again.read_bytes() == output.read_bytes()


def test_esd4_drops_surprise(dataset: Path, tmp_path: Path) -> None:
    report = build_manifest("esd", dataset, tmp_path / "esd4.jsonl", label_set=load_label_set("esd4"), durations=False)
    assert report.written == 61 - 12
    assert report.dropped_labels == {"surprise": 12}
