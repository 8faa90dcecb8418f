"""Generic CSV adapter: column mapping, paths, split normalisation, extras and error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora.generic_csv import normalise_split, scan
from ser.manifests.schema import ManifestError, read_manifest
from tests.fakes import write_tone

MAPPED = dict(
    id_col="utt",
    audio_col="file",
    label_col="emotion",
    speaker_col="spk",
    text_col="transcript",
    split_col="partition",
    session_col="sess",
    dialog_col="conv",
    start_col="onset",
    end_col="offset",
    gender_col="sex",
)


def write_csv(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_default_columns(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "meta.csv",
        [
            "audio,label,speaker,text,mood_score",
            "clips/a1.wav,happy,s1,Hello there,0.7",
            "./clips/sub/a2.flac,sad,s2,,",
        ],
    )
    first, second = scan(tmp_path, csv_path=csv_path).utterances
    assert (first.id, first.audio, first.label, first.speaker, first.text) == (
        "clips/a1",
        "clips/a1.wav",
        "happy",
        "s1",
        "Hello there",
    )
    assert first.extra == {"mood_score": "0.7"}
    assert (second.id, second.audio, second.text) == ("clips/sub/a2", "clips/sub/a2.flac", None)
    assert second.extra == {"mood_score": ""}
    assert first.split is None and first.start is None and first.gender is None


def test_column_mapping_and_extras(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "meta.csv",
        [
            "utt,file,emotion,spk,transcript,partition,sess,conv,onset,offset,sex,annotators,notes",
            'u1,audio/d1.wav,Angry,A,"Well, no.",Training,S1,d1,1.5,3.25,female,3,loud',
            "u2,audio/d1.wav,neutral,B,,DEV,S1,d1,3.25,4,M,5,",
            "u3,audio\\d2.wav,,,,,,,,,,,",
        ],
    )
    rows = scan(tmp_path, csv_path=csv_path, **MAPPED).utterances
    assert [u.id for u in rows] == ["u1", "u2", "u3"]
    u1, u2, u3 = rows
    assert (u1.audio, u1.label, u1.speaker, u1.text, u1.split) == ("audio/d1.wav", "Angry", "A", "Well, no.", "train")
    assert (u1.session, u1.dialog, u1.start, u1.end, u1.gender) == ("S1", "d1", 1.5, 3.25, "F")
    assert u1.extra == {"annotators": "3", "notes": "loud"}
    assert (u2.split, u2.gender, u2.end, u2.text) == ("validation", "M", 4.0, None)
    assert u2.extra == {"annotators": "5", "notes": ""}
    assert u3.audio == "audio/d2.wav"
    assert (u3.label, u3.speaker, u3.split, u3.session, u3.start, u3.gender) == (None,) * 6


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("train", "train"),
        ("Training", "train"),
        ("dev", "validation"),
        ("val", "validation"),
        ("Valid", "validation"),
        ("validation", "validation"),
        ("Development", "validation"),
        ("eval", "validation"),
        ("evaluation", "validation"),
        ("test", "test"),
        ("TESTING", "test"),
        ("Test1", "test1"),
        (" holdout ", "holdout"),
    ],
)
def test_normalise_split(raw: str, expected: str) -> None:
    assert normalise_split(raw) == expected


def test_split_column_in_rows(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "m.csv", ["audio,label,speaker,text,set", "a.wav,x,s,t,Evaluation", "b.wav,x,s,t,Test2"]
    )
    rows = scan(tmp_path, csv_path=csv_path, split_col="set").utterances
    assert [u.split for u in rows] == ["validation", "test2"]
    assert all(u.extra == {} for u in rows)


def test_missing_column_message(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["path,emotion,speaker,text", "a.wav,happy,s1,hi"])
    with pytest.raises(ManifestError) as err:
        scan(tmp_path, csv_path=csv_path, audio_col="path")
    message = str(err.value)
    assert "'label'" in message and "label_col" in message
    assert "columns present: path, emotion, speaker, text" in message
    assert "--label-col '' if the CSV has no such column" in message  # the command's flags, as typed
    with pytest.raises(ManifestError) as err:
        scan(tmp_path, csv_path=csv_path)
    assert "no column 'audio' (named by --audio-col; audio_col= in Python)" in str(err.value)
    assert "--audio-col ''" not in str(err.value)
    rows = scan(tmp_path, csv_path=csv_path, audio_col="path", label_col="emotion").utterances
    assert (rows[0].id, rows[0].label) == ("a", "happy")


def test_optional_columns_can_be_switched_off(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["audio", "a.wav"])
    (utt,) = scan(tmp_path, csv_path=csv_path, label_col=None, speaker_col=None, text_col=None).utterances
    assert (utt.id, utt.audio, utt.label, utt.extra) == ("a", "a.wav", None, {})


def test_bad_number_names_file_and_line(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["audio,label,speaker,text,start", "a.wav,x,s,t,0.5", "b.wav,x,s,t,1,5"])
    with pytest.raises(ManifestError, match="more fields than the header"):
        scan(tmp_path, csv_path=csv_path, start_col="start")
    write_csv(csv_path, ["audio,label,speaker,text,start", "a.wav,x,s,t,0.5", "b.wav,x,s,t,1s"])
    with pytest.raises(ManifestError) as err:
        scan(tmp_path, csv_path=csv_path, start_col="start")
    assert f"{csv_path}:3:" in str(err.value) and "'1s'" in str(err.value)


def test_empty_id_or_audio_names_file_and_line(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["id,audio,label,speaker,text", "x,a.wav,l,s,t", ",b.wav,l,s,t"])
    with pytest.raises(ManifestError, match=rf"{csv_path}:3: empty id"):
        scan(tmp_path, csv_path=csv_path, id_col="id")
    write_csv(csv_path, ["audio,label,speaker,text", "a.wav,l,s,t", "b.wav,l,s,t", " ,l,s,t"])
    with pytest.raises(ManifestError, match=rf"{csv_path}:4: empty audio path"):
        scan(tmp_path, csv_path=csv_path)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["audio,label,speaker,text", "a.wav,l,s,t", "a.flac,l,s,t"])
    with pytest.raises(ManifestError, match=r"m\.csv:3: id 'a' already used on line 2"):
        scan(tmp_path, csv_path=csv_path)


def test_end_before_start(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["audio,label,speaker,text,s,e", "a.wav,l,s,t,2,1"])
    with pytest.raises(ManifestError, match="ends"):
        scan(tmp_path, csv_path=csv_path, start_col="s", end_col="e")


def test_absolute_audio_paths(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    outside = tmp_path / "elsewhere" / "b.wav"
    csv_path = write_csv(
        root / "m.csv", ["audio,label,speaker,text", f"{root / 'clips' / 'a.wav'},l,s,t", f"{outside},l,s,t"]
    )
    inside, other = scan(root, csv_path=csv_path).utterances
    assert (inside.id, inside.audio) == ("clips/a", "clips/a.wav")
    assert (other.id, other.audio) == (outside.with_suffix("").as_posix(), outside.as_posix())


def test_csv_path_relative_to_root_delimiter_and_encoding(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "meta" / "list.csv",
        ["audio;label;speaker;text;Bemerkung", "a.wav;Ärger;s1;Grüß Gott;laut"],
        encoding="latin-1",
    )
    (utt,) = scan(tmp_path, csv_path=Path("meta/list.csv"), delimiter=";", encoding="latin-1").utterances
    assert (utt.label, utt.text, utt.extra) == ("Ärger", "Grüß Gott", {"Bemerkung": "laut"})
    with pytest.raises(ManifestError, match="not readable as utf-8"):
        scan(tmp_path, csv_path=Path("meta/list.csv"), delimiter=";")
    with pytest.raises(ManifestError, match="CSV file not found"):
        scan(tmp_path, csv_path=Path("meta/none.csv"))


def test_bom_blank_rows_and_trailing_delimiter(tmp_path: Path) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfaudio,label,speaker,text,\r\na.wav,l,s,t,\r\n,,,,\r\nb.wav,l,s,t,x\r\n")
    result = scan(tmp_path, csv_path=csv_path)
    assert [u.id for u in result.utterances] == ["a", "b"]
    assert result.utterances[0].extra == {}
    assert result.utterances[1].extra == {"column5": "x"}
    assert result.skipped == {"blank row": 1}


def test_repeated_header_names_are_refused(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["audio,label,speaker,text,label", "a.wav,l,s,t,m"])
    with pytest.raises(ManifestError, match="'label' occur more than once"):
        scan(tmp_path, csv_path=csv_path)


def test_round_trip_through_build_manifest(tmp_path: Path) -> None:
    write_tone(tmp_path / "clips" / "a.wav", seconds=0.5)
    write_tone(tmp_path / "clips" / "b.wav", seconds=0.5)
    write_csv(
        tmp_path / "meta.csv",
        [
            "audio,label,speaker,text,split,start,end,quality",
            "clips/a.wav,happy,s1,one,train,,,good",
            "clips/b.wav,sad,s2,two,val,0.1,0.4,poor",
        ],
    )
    output = tmp_path / "manifest.jsonl"
    report = build_manifest(
        "csv",
        tmp_path,
        output,
        options={"csv_path": "meta.csv", "split_col": "split", "start_col": "start", "end_col": "end"},
    )
    assert report.written == 2
    manifest = read_manifest(output)
    assert manifest.header.corpus == "csv"
    a, b = manifest.utterances
    assert (a.id, a.split, a.extra) == ("clips/a", "train", {"quality": "good"})
    assert a.duration == pytest.approx(0.5)
    assert (b.id, b.split, b.start, b.end) == ("clips/b", "validation", 0.1, 0.4)
    assert b.duration == pytest.approx(0.3)
    assert manifest.audio_path(b) == tmp_path.resolve() / "clips" / "b.wav"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"encoding": "nope"}, "unknown CSV encoding 'nope'; use a Python codec name such as utf-8"),
        ({"encoding": "rot13"}, "unknown CSV encoding 'rot13'"),  # a codec, but not a text encoding
        ({"delimiter": ""}, "CSV delimiter '' is not usable: it must be one character"),
        ({"delimiter": ";;"}, "CSV delimiter ';;' is not usable"),
        ({"delimiter": '"'}, "CSV delimiter '\"' is not usable"),
    ],
)
def test_bad_encoding_and_delimiter_options_are_manifest_errors(
    tmp_path: Path, options: dict[str, str], message: str
) -> None:
    csv_path = write_csv(tmp_path / "meta.csv", ["audio,label", "a.wav,happy"])
    with pytest.raises(ManifestError, match=re.escape(message)):
        scan(tmp_path, csv_path=csv_path, **options)


@pytest.mark.parametrize("spelling", ["tab", "TAB", "\\t", "\t"])
def test_tab_delimiter_spellings(tmp_path: Path, spelling: str) -> None:
    csv_path = write_csv(tmp_path / "meta.tsv", ["audio\tlabel", "a.wav\thappy, mostly"])
    (utt,) = scan(tmp_path, csv_path=csv_path, delimiter=spelling, speaker_col=None, text_col=None).utterances
    assert (utt.audio, utt.label) == ("a.wav", "happy, mostly")
