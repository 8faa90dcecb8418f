"""Manifest JSONL format: round trip, header, atomic writes, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ser.manifests.schema import (
    SECONDS_FIELDS,
    TEXT_FIELDS,
    UTTERANCE_FIELDS,
    Manifest,
    ManifestError,
    ManifestHeader,
    Utterance,
    file_sha256,
    read_manifest,
    write_manifest,
)


def _rows() -> list[Utterance]:
    return [
        Utterance(
            id="a", audio="x/a.wav", text="héllo \u2028 world", label="ang", speaker="s1", extra={"valence": 2.5}
        ),
        Utterance(id="b", audio="/abs/b.wav", start=1.0, end=2.5, label="neu"),
    ]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    n = write_manifest(out, ManifestHeader(corpus="toy", root=str(tmp_path)), _rows())
    assert n == 2
    manifest = read_manifest(out)
    assert manifest.header.corpus == "toy"
    assert manifest.utterances == _rows()
    assert manifest.line_numbers == [2, 3]
    assert manifest.audio_path(manifest.utterances[0]) == tmp_path / "x" / "a.wav"
    assert manifest.audio_path(manifest.utterances[1]) == Path("/abs/b.wav")
    assert manifest.location(1) == f"{out}:3"


def test_none_fields_are_omitted_and_unknown_keys_go_to_extra(tmp_path: Path) -> None:
    line = _rows()[1].to_json()
    assert json.loads(line) == {"id": "b", "audio": "/abs/b.wav", "start": 1.0, "end": 2.5, "label": "neu"}
    path = tmp_path / "hand.jsonl"
    path.write_text('{"id": "q", "mood": "odd"}\n', encoding="utf-8")
    manifest = read_manifest(path)
    assert manifest.header.corpus == "unknown"
    assert manifest.root == tmp_path
    assert manifest.utterances[0].extra == {"mood": "odd"}


def test_identical_content_gives_identical_hash(tmp_path: Path) -> None:
    header = ManifestHeader(corpus="toy", root="/r")
    write_manifest(tmp_path / "1.jsonl", header, _rows())
    write_manifest(tmp_path / "2.jsonl", header, _rows())
    assert file_sha256(tmp_path / "1.jsonl") == file_sha256(tmp_path / "2.jsonl")


def test_failed_write_leaves_previous_file_untouched(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    write_manifest(out, ManifestHeader(corpus="toy", root="."), _rows())
    before = out.read_bytes()

    def exploding():
        yield _rows()[0]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_manifest(out, ManifestHeader(corpus="toy", root="."), exploding())
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"ser_manifest": 1, "corpus": "c", "root": "."}\n{"id": "a"\n', r"m.jsonl:2: not valid JSON"),
        ('{"ser_manifest": 9, "corpus": "c", "root": "."}\n', r"version 9 is not supported"),
        ('{"id": "a"}\n[1, 2]\n', r"m.jsonl:2: expected a JSON object"),
        ('{"label": "x"}\n', r"m.jsonl:1: row has no string 'id'"),
        ('{"id": "a"}\n{"ser_manifest": 1}\n', r"header line may only be the first line"),
    ],
)
def test_malformed_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest file"):
        read_manifest(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(b'{"id": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(bad)


def test_in_memory_manifest_locations() -> None:
    manifest = Manifest(header=ManifestHeader(corpus="c", root="."), utterances=_rows())
    assert manifest.location(0) == "row 1"
    assert len(manifest) == 2
    assert manifest.by_id()["b"].start == 1.0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            '{"id": "a", "label": 5}',
            """row 'a': field 'label' is 5 (a number); it must be a string or null, e.g. "5"; """
            "fix that line",
        ),
        (
            '{"id": "a", "start": "abc"}',
            "row 'a': field 'start' is \"abc\" (a string); it must be a number of seconds "
            "(e.g. 1.25) or null; fix that line",
        ),
        ('{"id": "a", "audio": 7}', "row 'a': field 'audio' is 7 (a number); it must be a string or null, e.g. \"7\""),
        (
            '{"id": "a", "duration": "x"}',
            "row 'a': field 'duration' is \"x\" (a string); it must be a number of seconds",
        ),
        ('{"id": "a", "end": true}', "field 'end' is true (a boolean); it must be a number of seconds"),
        ('{"id": "a", "start": NaN}', "field 'start' is NaN (not a finite number); it must be a number of seconds"),
        ('{"id": "a", "speaker": ["s1"]}', "field 'speaker' is [\"s1\"] (a list); it must be a string"),
        ('{"id": "a", "extra": [1]}', "field 'extra' is a list; it must be a JSON object of corpus-specific fields"),
    ],
)
def test_wrong_field_types_name_the_line_and_the_fix(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"ser_manifest": 1, "corpus": "c", "root": "."}\n{"id": "ok"}\n' + row + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=f"^{re.escape(str(path))}:3: .*{re.escape(message)}"):
        read_manifest(path)


def test_numbers_and_nulls_are_accepted_as_written(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"id": "a", "start": 1, "end": 2.5, "duration": null, "label": null, "extra": {"v": 3}}\n', encoding="utf-8"
    )
    (row,) = read_manifest(path).utterances
    assert (row.start, row.end, row.duration, row.label, row.extra) == (1, 2.5, None, None, {"v": 3})
    assert type(row.start) is int  # kept as written: the row fingerprint (and so caches) must not change


def test_every_field_has_a_type_check() -> None:
    assert {"id", "extra", *TEXT_FIELDS, *SECONDS_FIELDS} == set(UTTERANCE_FIELDS)


def test_header_fields_must_be_strings(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"ser_manifest": 1, "corpus": "c", "root": ".", "label_set": 4}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=f"{path}:1: header field 'label_set' is 4; it must be a string"):
        read_manifest(path)
