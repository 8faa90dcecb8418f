"""Label sets: built-ins, user files, filtering with counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser.manifests.corpora import CORPORA
from ser.manifests.labels import LabelSet, apply_label_set, builtin_label_sets, choose_label_set, load_label_set
from ser.manifests.schema import Manifest, ManifestError, ManifestHeader, Utterance


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
    path.write_text(
        json.dumps(
            {
                "pos-neg": {"classes": ["neg", "pos"], "map": {"ang": "neg", "hap": "pos"}},
                "other": {"classes": ["a"], "map": {"x": "a"}},
            }
        ),
        encoding="utf-8",
    )
    chosen = load_label_set(f"{path}#pos-neg")
    assert chosen.classes == ("neg", "pos")
    with pytest.raises(ManifestError, match="choose one with"):
        load_label_set(str(path))
    with pytest.raises(ManifestError, match="unknown label set 'nope'"):
        load_label_set("nope")


def test_inconsistent_label_set_is_refused() -> None:
    with pytest.raises(ManifestError, match="not in its classes"):
        LabelSet(name="bad", classes=("a",), mapping={"x": "b"})


@pytest.mark.parametrize(
    ("name", "header", "corpus", "all_labels", "want"),
    [
        ("msp4", "iemocap4", "iemocap", False, ("msp4", "named")),
        (None, "iemocap4-exc", "iemocap", False, ("iemocap4-exc", "header")),
        (None, None, "meld", False, ("meld7", "default")),
        (None, None, "csv", False, (None, "none")),
        ("msp4", "iemocap4", "iemocap", True, (None, "none")),
    ],
)
def test_label_set_choice(
    name: str | None, header: str | None, corpus: str, all_labels: bool, want: tuple[str | None, str]
) -> None:
    manifest = Manifest(header=ManifestHeader(corpus=corpus, root=".", label_set=header), utterances=[])
    choice = choose_label_set(manifest, name, all_labels=all_labels)
    assert (choice.label_set.name if choice.label_set else None, choice.source) == want


def test_raw_label_lists_match_the_adapters_and_cover_the_label_sets() -> None:
    from ser.manifests.corpora import cremad, emodb, esd, iemocap, msp_podcast, ravdess, tess

    raw_labels = {name: corpus.raw_labels for name, corpus in CORPORA.items() if corpus.raw_labels is not None}
    assert set(raw_labels) == {name for name, corpus in CORPORA.items() if corpus.default_label_set}
    emitted = {
        "iemocap": iemocap.CODES,
        "msp-podcast": msp_podcast.EMOTIONS.values(),
        "cremad": cremad.EMOTIONS.values(),
        "emodb": emodb.EMOTIONS.values(),
        "esd": esd.EMOTIONS.values(),
        "ravdess": ravdess.EMOTIONS.values(),
        "tess": [*tess.EMOTIONS.values(), *tess.TWO_TOKEN_EMOTIONS.values()],
    }
    for corpus, labels in emitted.items():
        assert set(raw_labels[corpus]) == set(labels), corpus
    for label_set in builtin_label_sets().values():
        for corpus, mapping in (label_set.per_corpus or {}).items():  # cross-corpus sets, per corpus
            assert set(mapping) <= set(raw_labels[corpus]), (label_set.name, corpus)
        # every raw label a built-in set maps is one its corpus writes
        if label_set.field == "label" and label_set.per_corpus is None:
            assert set(label_set.mapping) <= set(raw_labels[label_set.corpus]), label_set.name
