"""EmoDB adapter: file-name parsing, speaker genders, German texts, erkennung.txt and selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora import get_adapter
from ser.manifests.corpora.emodb import read_erkennung, scan
from ser.manifests.labels import load_label_set
from ser.manifests.schema import ManifestError, read_manifest
from tests.fakes import write_tone
from tests.fakes.emodb import RATINGS, SELECTED, make_emodb_tree


def test_parses_file_names_and_erkennung(tmp_path: Path) -> None:
    result = scan(make_emodb_tree(tmp_path))
    by_id = {u.id: u for u in result.utterances}
    assert sorted(by_id) == sorted(RATINGS)
    utt = by_id["03a01Fa"]
    assert utt.audio == "wav/03a01Fa.wav"
    assert utt.label == "happiness"
    assert utt.speaker == "03"
    assert utt.gender == "M"
    assert utt.script == "a01"
    assert utt.text == "Der Lappen liegt auf dem Eisschrank."
    assert utt.lang == "de"
    assert utt.extra == {"version": "a", "recognition": 90.0, "naturalness": 75.0}
    assert by_id["16b10Ta"].extra == {"version": "a", "recognition": 95.5, "naturalness": 70.25}
    assert by_id["11b09Na"].extra == {"version": "a"}
    assert result.skipped == {"file name is not SSTTTEV (speaker, text, emotion, version)": 1}
    assert any("take2.wav" in note for note in result.notes)


def test_labels_genders_and_umlaut_texts(tmp_path: Path) -> None:
    by_id = {u.id: u for u in scan(make_emodb_tree(tmp_path)).utterances}
    assert {uid: u.label for uid, u in by_id.items()} == {
        "03a01Fa": "happiness",
        "08b01Wa": "anger",
        "09a04Lc": "boredom",
        "10b02Ea": "disgust",
        "13a07Ab": "fear",
        "16b10Ta": "sadness",
        "11b09Na": "neutral",
    }
    assert {u.speaker: u.gender for u in by_id.values()} == {
        "03": "M",
        "08": "F",
        "09": "F",
        "10": "M",
        "13": "F",
        "16": "F",
        "11": "M",
    }
    assert by_id["08b01Wa"].text == "Was sind denn das für Tüten, die da unter dem Tisch stehen?"
    assert by_id["09a04Lc"].text == "Heute abend könnte ich es ihm sagen."
    assert by_id["09a04Lc"].extra["version"] == "c"
    assert by_id["13a07Ab"].text == "In sieben Stunden wird es soweit sein."


def test_selected_only_applies_the_selection_rule(tmp_path: Path) -> None:
    result = scan(make_emodb_tree(tmp_path), selected_only=True)
    assert [u.id for u in result.utterances] == sorted(SELECTED)
    assert result.skipped == {
        "file name is not SSTTTEV (speaker, text, emotion, version)": 1,
        "not selected (recognition < 80 or naturalness < 60)": 2,
        "not listed in erkennung.txt": 1,
    }


def test_without_erkennung(tmp_path: Path) -> None:
    corpus = make_emodb_tree(tmp_path, with_erkennung=False)
    result = scan(corpus)
    assert len(result.utterances) == 7
    assert all(u.extra == {"version": u.id[-1]} for u in result.utterances)
    with pytest.raises(ManifestError, match=r"erkennung\.txt"):
        scan(corpus, selected_only=True)


def test_wavs_directly_in_root(tmp_path: Path) -> None:
    write_tone(tmp_path / "15b03Fb.wav")
    (utt,) = scan(tmp_path).utterances
    assert (utt.id, utt.audio, utt.gender, utt.script) == ("15b03Fb", "15b03Fb.wav", "M", "b03")
    assert utt.text == "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht."


def test_unknown_codes_are_skipped(tmp_path: Path) -> None:
    write_tone(tmp_path / "wav" / "01a01Fa.wav")  # no speaker 01
    write_tone(tmp_path / "wav" / "03a03Fa.wav")  # no text a03
    write_tone(tmp_path / "wav" / "03a01Xa.wav")  # no emotion X
    result = scan(tmp_path)
    assert result.utterances == []
    assert result.skipped == {"unknown code in file name": 3}


def test_read_erkennung_handles_padding_and_bad_numbers(tmp_path: Path) -> None:
    ratings, ignored = read_erkennung(make_emodb_tree(tmp_path) / "erkennung.txt")
    assert ratings["10b02Ea"].naturalness == pytest.approx(59.9)
    assert ratings["12a05Fa"].recognition == 88.0
    assert ignored == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes("Nr.\tSatz\terkannt\tnatuerlich\n1\xa0\t03a01Fa.wav\t9O,00\t75,00\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"bad\.txt:2: .*'9O,00'"):
        read_erkennung(bad)


def test_registered_and_round_trip_with_label_set(tmp_path: Path) -> None:
    corpus = make_emodb_tree(tmp_path)
    assert get_adapter("emodb") is scan
    output = tmp_path / "out" / "emodb.jsonl"
    report = build_manifest(
        "emodb", corpus, output, label_set=load_label_set("emodb7"), options={"selected_only": True}
    )
    assert report.written == 4
    assert report.skipped["not selected (recognition < 80 or naturalness < 60)"] == 2
    manifest = read_manifest(output)
    assert manifest.header.corpus == "emodb"
    assert manifest.header.label_set == "emodb7"
    assert [u.id for u in manifest] == sorted(SELECTED)
    first = manifest.utterances[0]
    assert first.duration == pytest.approx(0.25)
    assert first.extra == {"version": "a", "recognition": 90.0, "naturalness": 75.0}
    assert manifest.audio_path(first) == corpus.resolve() / "wav" / "03a01Fa.wav"
    assert manifest.by_id()["08b01Wa"].text == "Was sind denn das für Tüten, die da unter dem Tisch stehen?"
