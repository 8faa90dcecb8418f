"""TESS adapter: names parsed from files, pleasant-surprise spellings, both speakers female."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora.tess import parse_name, scan
from ser.manifests.labels import load_label_set
from ser.manifests.schema import ManifestError, read_manifest
from tests.fakes import write_tone
from tests.fakes.tess import FILES, TOP, UNPARSABLE, make_tess_tree


def test_finds_files_below_an_extra_top_folder(tmp_path: Path) -> None:
    result = scan(make_tess_tree(tmp_path))
    by_audio = {u.audio: u for u in result.utterances}
    assert sorted(by_audio) == sorted(f"{TOP}/{relative}" for relative in FILES)
    for relative, (speaker, word, label) in FILES.items():
        utt = by_audio[f"{TOP}/{relative}"]
        assert (utt.speaker, utt.script, utt.label) == (speaker, word, label)
        assert utt.id == Path(relative).stem
        assert utt.text == f"Say the word {word}"
        assert utt.gender == "F"
        assert utt.lang == "en"
    assert result.skipped == {"file name is not {OAF|YAF}_{word}_{emotion}": 1}
    assert result.notes == [f"file name is not {{OAF|YAF}}_{{word}}_{{emotion}}: {TOP}/{UNPARSABLE}"]


def test_concrete_rows(tmp_path: Path) -> None:
    by_id = {u.id: u for u in scan(make_tess_tree(tmp_path)).utterances}
    assert set(by_id) == {
        "OAF_back_angry",
        "OAF_bar_fear",
        "OAF_base_ps",
        "OAF_bath_neutral",
        "YAF_back_ps",
        "YAF_bite_pleasant_surprised",
        "YAF_chalk_Pleasant_Surprise",
        "YAF_jar_disgust",
        "YAF_dog_happy",
        "YAF_Rain_Sad",
    }
    assert by_id["OAF_base_ps"].label == "pleasant_surprise"
    assert by_id["YAF_bite_pleasant_surprised"].label == "pleasant_surprise"
    assert by_id["YAF_bite_pleasant_surprised"].text == "Say the word bite"
    assert by_id["YAF_Rain_Sad"].label == "sad"
    assert by_id["YAF_Rain_Sad"].text == "Say the word rain"
    assert {u.gender for u in by_id.values()} == {"F"}
    assert {u.speaker for u in by_id.values()} == {"OAF", "YAF"}


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("OAF_back_ps", ("OAF", "back", "pleasant_surprise")),
        ("YAF_back_pleasant_surprised", ("YAF", "back", "pleasant_surprise")),
        ("oaf_Back_Pleasant_Surprise", ("OAF", "back", "pleasant_surprise")),
        ("OAF_Fear_fear", ("OAF", "fear", "fear")),
        ("YAF_sad_sad", ("YAF", "sad", "sad")),
        ("YAF_pleasant_ps", ("YAF", "pleasant", "pleasant_surprise")),
        ("YAF_ice_cream_happy", ("YAF", "ice_cream", "happy")),
        ("OAF_surprise_angry", ("OAF", "surprise", "angry")),
        ("OAF_back", None),
        ("OAF_pleasant_surprise", None),
        ("OAF_back_calm", None),
        ("XAF_back_sad", None),
        ("OAF__sad", None),
    ],
)
def test_parse_name(stem: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_name(stem) == expected


def test_duplicate_stem_names_both_paths(tmp_path: Path) -> None:
    corpus = make_tess_tree(tmp_path)
    copy = corpus / "copy" / "OAF_angry" / "OAF_back_angry.wav"
    copy.parent.mkdir(parents=True)
    shutil.copy(corpus / TOP / "OAF_angry" / "OAF_back_angry.wav", copy)
    with pytest.raises(ManifestError) as err:
        scan(corpus)
    message = str(err.value)
    assert "'OAF_back_angry'" in message
    assert "copy/OAF_angry/OAF_back_angry.wav" in message
    assert f"{TOP}/OAF_angry/OAF_back_angry.wav" in message


def test_round_trip_with_tess7(tmp_path: Path) -> None:
    corpus = make_tess_tree(tmp_path)
    write_tone(corpus / TOP / "OAF_calm" / "OAF_back_calm.wav")  # not a TESS emotion: skipped
    output = tmp_path / "tess.jsonl"
    report = build_manifest("tess", corpus, output, label_set=load_label_set("tess7"))
    assert report.written == len(FILES)
    assert sum(report.skipped.values()) == 2
    manifest = read_manifest(output)
    assert manifest.header.label_set == "tess7"
    labels = load_label_set("tess7")
    assert sorted(labels.class_of(u) for u in manifest) == [
        "ang",
        "dis",
        "fea",
        "hap",
        "neu",
        "sad",
        "sur",
        "sur",
        "sur",
        "sur",
    ]
    assert all(u.duration == pytest.approx(0.25) for u in manifest)
