"""RAVDESS adapter: file-name decoding on a fake tree, and the real 16 kHz subset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ser.manifests.build import build_manifest
from ser.manifests.corpora.ravdess import scan
from ser.manifests.labels import load_label_set
from ser.manifests.protocols import make_folds
from ser.manifests.schema import ManifestError, read_manifest
from tests.fakes import write_tone


def make_ravdess_tree(root: Path) -> Path:
    for name in (
        "Actor_01/03-01-05-02-01-02-01.wav",
        "Actor_02/03-01-01-01-02-01-02.flac",
        "Actor_02/03-02-03-01-01-01-02.wav",  # song
        "Actor_02/02-01-03-01-01-01-02.wav",  # video-only
        "Actor_02/notes.wav",
    ):  # not a RAVDESS name
        write_tone(root / name)
    (root / "Actor_01" / "._03-01-05-02-01-02-01.wav").write_bytes(b"resource fork")
    return root


def test_fake_tree_fields_and_skips(tmp_path: Path) -> None:
    result = scan(make_ravdess_tree(tmp_path))
    assert [u.id for u in result.utterances] == ["03-01-05-02-01-02-01", "03-01-01-01-02-01-02"]
    angry, neutral = result.utterances
    assert (angry.label, angry.speaker, angry.gender, angry.text) == (
        "angry",
        "Actor_01",
        "M",
        "Kids are talking by the door",
    )
    assert angry.extra == {"intensity": "strong", "repetition": 2, "vocal_channel": "speech"}
    assert (neutral.label, neutral.gender, neutral.script, neutral.audio) == (
        "neutral",
        "F",
        "statement02",
        "Actor_02/03-01-01-01-02-01-02.flac",
    )
    assert result.skipped == {
        "song clip (use --include-song)": 1,
        "video-only clip": 1,
        "file name is not MM-VV-EE-II-SS-RR-AA": 1,
    }
    with_song = scan(tmp_path, include_song=True)
    assert [u.extra["vocal_channel"] for u in with_song.utterances].count("song") == 1


def test_not_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"Actor_01 \.\.\. Actor_24"):
        scan(tmp_path / "nowhere")


def test_real_ravdess_manifest(ravdess_root: Path, tmp_path: Path) -> None:
    report = build_manifest("ravdess", ravdess_root, tmp_path / "rav.jsonl")
    manifest = read_manifest(tmp_path / "rav.jsonl")
    assert report.written == len(manifest) == 1200
    assert len({u.speaker for u in manifest}) == 20
    assert Counter(u.label for u in manifest) == {
        "neutral": 80,
        "calm": 160,
        "happy": 160,
        "sad": 160,
        "angry": 160,
        "fearful": 160,
        "disgust": 160,
        "surprised": 160,
    }
    assert Counter(u.gender for u in manifest) == {"M": 600, "F": 600}
    assert all(u.duration is not None and 2.5 < u.duration < 6.5 for u in manifest)
    folds = make_folds(manifest, "speaker-loso", label_set=load_label_set("ravdess8"))
    assert len(folds.folds) == 20
    for fold in folds.folds:
        assert len(fold.test) == 60
        test_speakers = {folds.utterances[i].speaker for i in fold.test}
        assert test_speakers == {fold.name}
        assert test_speakers.isdisjoint(folds.utterances[i].speaker for i in (*fold.train, *fold.validation))
