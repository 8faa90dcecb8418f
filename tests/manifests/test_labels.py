"""Label sets: built-ins, user files, filtering with counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser.manifests.labels import LabelSet, apply_label_set, builtin_label_sets, load_label_set
from ser.manifests.schema import ManifestError, Utterance


def test_builtin_sets_cover_every_corpus_and_are_consistent() -> None:
    sets = builtin_label_sets()
    for name in ("iemocap4", "iemocap6", "meld7", "esd5", "ravdess8", "emodb7", "cremad6", "msp8", "tess7"):
        assert name in sets
    assert sets["iemocap4"].classes == ("ang", "hap", "sad", "neu")
    assert sets["ravdess8"].classes == ("neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur")
    assert len(sets["meld7"].classes) == 7


def test_iemocap4_merges_excited_and_counts_drops() -> None:
    rows = [Utterance(id=str(i), label=lab) for i, lab in enumerate(["exc", "hap", "fru", "xxx", "neu", None])]
    result = apply_label_set(rows, load_label_set("iemocap4"))
    assert [u.id for u in result.kept] == ["0", "1", "4"]
    assert result.dropped == {"fru": 1, "xxx": 1, "<none>": 1}
    assert load_label_set("iemocap4").index_of(rows[0]) == 1
    assert "dropped 3 (<none> 1, fru 1, xxx 1)" in result.summary()


def test_label_set_reading_an_extra_field() -> None:
    sentiment = load_label_set("meld-sentiment3")
    utt = Utterance(id="x", label="joy", extra={"sentiment": "positive"})
    assert sentiment.class_of(utt) == "pos"
    assert sentiment.index_of(utt) == 2


def test_user_label_set_file(tmp_path: Path) -> None:
    path = tmp_path / "sets.json"
    path.write_text(json.dumps({"pos-neg": {"classes": ["neg", "pos"], "map": {"ang": "neg", "hap": "pos"}},
                                "other": {"classes": ["a"], "map": {"x": "a"}}}), encoding="utf-8")
    chosen = load_label_set(f"{path}#pos-neg")
    assert chosen.classes == ("neg", "pos")
    with pytest.raises(ManifestError, match="choose one with"):
        load_label_set(str(path))
    with pytest.raises(ManifestError, match="unknown label set 'nope'"):
        load_label_set("nope")


def test_inconsistent_label_set_is_refused() -> None:
    with pytest.raises(ManifestError, match="not in its classes"):
        LabelSet(name="bad", classes=("a",), mapping={"x": "b"})
