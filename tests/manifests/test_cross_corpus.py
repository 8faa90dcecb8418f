"""Cross-corpus manifests: joining, per-corpus label harmonisation, the cross-corpus protocols and their leak checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.fingerprints import row_fingerprints
from ser.manifests.join import join_manifest_objects, join_manifests
from ser.manifests.labels import apply_label_set, choose_label_set, load_label_set, shared_label_set
from ser.manifests.protocols import PROTOCOLS, make_folds
from ser.manifests.schema import Manifest, ManifestError, ManifestHeader, Utterance, read_manifest, write_manifest

RAV_LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
EMODB_LABELS = ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]


def _write_corpus(folder: Path, corpus: str, labels: list[str], n_speakers: int, per_speaker: int) -> Path:
    """A manifest of ``corpus`` with real (tiny, distinct) audio files under ``folder/audio``."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    rows = []
    for s in range(n_speakers):
        for k in range(per_speaker):
            name = f"{corpus}_{s:02d}_{k:02d}.wav"
            (audio / name).write_bytes(f"{corpus}{s}{k}".encode())
            rows.append(
                Utterance(
                    id=f"{corpus[:3]}{s:02d}{k:02d}",
                    audio=name,
                    label=labels[k % len(labels)],
                    speaker=f"{s:02d}",
                    gender="MF"[s % 2],
                )
            )
    path = folder / f"{corpus}.jsonl"
    write_manifest(path, ManifestHeader(corpus=corpus, root="audio"), rows)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """(ravdess-like manifest: 6 speakers x 16 rows, emodb-like manifest: 5 speakers x 14 rows)."""
    return (
        _write_corpus(tmp_path / "rav", "ravdess", RAV_LABELS, 6, 16),
        _write_corpus(tmp_path / "emo", "emodb", EMODB_LABELS, 5, 14),
    )


@pytest.fixture
def joined(pair: tuple[Path, Path], tmp_path: Path) -> Manifest:
    out = tmp_path / "out" / "joined.jsonl"
    join_manifests(pair, out)
    return read_manifest(out)


# ------------------------------------------------------------------------------------------ join


def test_join_keeps_ids_qualifies_speakers_and_resolves_audio_per_corpus(pair, joined) -> None:
    rav, emo = (read_manifest(p) for p in pair)
    assert joined.header.corpus == "emodb+ravdess"
    assert sorted(joined.header.roots or {}) == ["emodb", "ravdess"]
    assert len(joined) == 96 + 70
    by_id = joined.by_id()
    for source in (rav, emo):
        corpus = source.header.corpus
        for row in source.utterances:
            new = by_id[row.id]
            assert new.extra["corpus"] == corpus
            assert new.speaker == f"{corpus}/{row.speaker}"
            assert new.audio == row.audio
            assert joined.audio_path(new) == source.audio_path(row)
            assert joined.audio_path(new).is_file()


def test_joined_rows_keep_the_audio_fingerprints_of_the_separate_manifests(pair, joined) -> None:
    """A store extracted from a corpus' own manifest still matches the joined rows (same id, same fingerprint)."""
    for path in pair:
        source = read_manifest(path)
        ids = {u.id for u in source.utterances}
        mine = row_fingerprints(source, source.utterances, modality="audio", scheme="v3")
        theirs = row_fingerprints(joined, [u for u in joined.utterances if u.id in ids], modality="audio", scheme="v3")
        assert mine == theirs
        assert len(set(mine.values())) == len(ids)  # the content is part of it: every file differs


def test_join_refuses_shared_ids_naming_both_manifests_and_prefix_fixes_it(tmp_path: Path) -> None:
    a = _write_corpus(tmp_path / "a", "tess", ["angry", "happy"], 2, 2)
    b = _write_corpus(tmp_path / "b", "cremad", ["anger", "happy"], 2, 2)
    rows = read_manifest(b).utterances
    rows[0].id = "tes0000"  # an id of the tess manifest
    write_manifest(b, read_manifest(b).header, rows)
    with pytest.raises(ManifestError, match=r"1 ids occur in two manifests, e\.g\. tes0000 in both .*tess\.jsonl"):
        join_manifests([a, b], tmp_path / "j.jsonl")
    join_manifests([a, b], tmp_path / "j.jsonl", prefix=True)
    ids = [u.id for u in read_manifest(tmp_path / "j.jsonl").utterances]
    assert "tess/tes0000" in ids and "cremad/tes0000" in ids and len(ids) == 8


def test_join_refuses_two_manifests_of_one_corpus_and_joined_inputs(pair, tmp_path: Path) -> None:
    rav = pair[0]
    with pytest.raises(ManifestError, match="are both 'ravdess' manifests"):
        join_manifests([rav, rav], tmp_path / "j.jsonl")
    join_manifests(pair, tmp_path / "j.jsonl")
    with pytest.raises(ManifestError, match="already a joined manifest"):
        join_manifests([tmp_path / "j.jsonl", rav], tmp_path / "k.jsonl")


def test_join_command(pair, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "j.jsonl"
    result = runner.invoke(app, ["manifest", "join", str(pair[0]), str(pair[1]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "166 rows (emodb+ravdess: ravdess 96, emodb 70)" in result.output
    header = json.loads(out.read_text().splitlines()[0])
    assert header["corpus"] == "emodb+ravdess" and set(header["roots"]) == {"emodb", "ravdess"}
    again = runner.invoke(app, ["manifest", "join", str(pair[0]), str(pair[0]), "-o", str(out)])
    assert again.exit_code == 2 and "both 'ravdess' manifests" in again.output


def test_single_corpus_header_bytes_are_unchanged() -> None:
    assert ManifestHeader(corpus="ravdess", root="r").to_json() == (
        '{"ser_manifest": 1, "corpus": "ravdess", "root": "r", "label_set": null}'
    )


# ------------------------------------------------------------------------------------------ label sets


def test_cross4_maps_per_corpus_and_counts_drops_per_corpus(joined) -> None:
    cross4 = load_label_set("cross4")
    assert cross4.classes == ("ang", "hap", "neu", "sad")
    result = apply_label_set(joined.utterances, cross4)
    kept = Counter(cross4.class_of(u) for u in result.kept)
    # ravdess: 6 speakers x 16 rows, labels cycle over 8 -> 12 rows each; emodb: 5 x 14 over 7 -> 10 each
    assert kept == {"ang": 22, "hap": 22, "neu": 22, "sad": 22}
    assert result.dropped == {
        "ravdess:calm": 12,
        "ravdess:fearful": 12,
        "ravdess:disgust": 12,
        "ravdess:surprised": 12,
        "emodb:boredom": 10,
        "emodb:disgust": 10,
        "emodb:fear": 10,
    }
    # a row of a corpus the set has no map for is dropped, and so is a row without a corpus
    assert cross4.class_of(Utterance(id="x", label="angry", extra={"corpus": "nowhere"})) is None
    assert cross4.class_of(Utterance(id="y", label="angry")) is None
    assert cross4.class_of(Utterance(id="z", label="exc", extra={"corpus": "iemocap"})) == "hap"
    assert cross4.class_of(Utterance(id="w", label="joy", extra={"corpus": "meld"})) == "hap"


def test_shared_is_the_largest_class_set_the_corpora_have(joined) -> None:
    assert shared_label_set(["ravdess", "emodb"]).classes == ("ang", "dis", "fea", "hap", "neu", "sad")
    assert shared_label_set(["iemocap", "meld"]).classes == ("ang", "hap", "neu", "sad")
    assert shared_label_set(["ravdess", "tess", "cremad"]).classes == ("ang", "dis", "fea", "hap", "neu", "sad")
    choice = choose_label_set(joined, None)  # a joined manifest defaults to shared
    assert choice.label_set is not None and choice.label_set.name == "shared" and choice.source == "default"
    assert choose_label_set(joined, "shared").label_set == choice.label_set
    with pytest.raises(ManifestError, match="computed from the corpora of a joined manifest"):
        load_label_set("shared")
    with pytest.raises(ManifestError, match="not of csv"):
        shared_label_set(["ravdess", "csv"])


def test_validating_a_joined_manifest_checks_each_row_against_its_own_corpus(joined) -> None:
    from ser.manifests.validation import validate_manifest

    choice = choose_label_set(joined, None)
    joined.utterances[0].label = "angryy"  # a typo in a ravdess row
    report = validate_manifest(joined, label_set=choice.label_set, check_audio=False, default_label_set=True)
    assert [p.kind for p in report.warnings] == ["label outside the default label set"]
    assert len(report.warnings[0].rows) == 12 + 12 + 10  # ravdess calm, surprised; emodb boredom
    (error,) = report.errors
    assert error.kind == "label unknown to the corpus" and len(error.rows) == 1 and "'angryy'" in error.rows[0]


# ------------------------------------------------------------------------------------------ protocols


def test_cross_corpus_fold_trains_on_training_corpora_only(joined) -> None:
    shared = choose_label_set(joined, "shared").label_set
    fold_set = make_folds(joined, "cross-corpus", label_set=shared, options={"test": "emodb"})
    (fold,) = fold_set.folds
    u = fold_set.utterances
    assert fold.name == "ravdess-to-emodb"
    assert len(fold.test) == 60 and {u[i].extra["corpus"] for i in fold.test} == {"emodb"}
    assert len(fold.train) + len(fold.validation) == 72  # 6 of the 8 ravdess labels x 12
    assert {u[i].extra["corpus"] for i in (*fold.train, *fold.validation)} == {"ravdess"}
    val_speakers = {u[i].speaker for i in fold.validation}
    assert val_speakers and all(s.startswith("ravdess/") for s in val_speakers)
    assert not val_speakers & {u[i].speaker for i in fold.train}
    card = fold_set.card
    assert card.corpus == "emodb+ravdess" and card.speaker_independent and card.label_set == "shared"
    assert card.cells == {"ravdess-to-emodb": {"train": ["ravdess"], "test": "emodb"}}
    assert fold_set.dropped_labels == {"ravdess:calm": 12, "ravdess:surprised": 12, "emodb:boredom": 10}


def test_cross_corpus_matrix_has_every_ordered_pair_and_the_diagonal(joined) -> None:
    fold_set = make_folds(joined, "cross-corpus-matrix", label_set=load_label_set("cross4"), options={"k": 3})
    names = [f.name for f in fold_set.folds]
    assert names == [
        "emodb-to-emodb-1",
        "emodb-to-emodb-2",
        "emodb-to-emodb-3",
        "emodb-to-ravdess",
        "ravdess-to-emodb",
        "ravdess-to-ravdess-1",
        "ravdess-to-ravdess-2",
        "ravdess-to-ravdess-3",
    ]
    cells = fold_set.card.cells
    assert cells["emodb-to-ravdess"] == {"train": ["emodb"], "test": "ravdess"}
    assert cells["ravdess-to-ravdess-2"] == {"train": ["ravdess"], "test": "ravdess"}
    u = fold_set.utterances
    diagonal = [f for f in fold_set.folds if f.name.startswith("ravdess-to-ravdess")]
    # the diagonal tests every ravdess row once, its speakers never in their own fold's training rows
    assert sorted(i for f in diagonal for i in f.test) == sorted(i for i in u if u[i].extra["corpus"] == "ravdess")
    for fold in fold_set.folds:
        test_speakers = {u[i].speaker for i in fold.test}
        assert not test_speakers & {u[i].speaker for i in (*fold.train, *fold.validation)}
    assert "cross-corpus-matrix" in PROTOCOLS and PROTOCOLS["cross-corpus-matrix"].options["k"] == 5


def test_cross_corpus_refuses_a_manifest_that_is_not_joined(pair) -> None:
    rav = read_manifest(pair[0])
    with pytest.raises(ManifestError, match=r"needs a joined manifest.*ser manifest join"):
        make_folds(rav, "cross-corpus", label_set=load_label_set("cross4"), options={"test": "ravdess"})
    with pytest.raises(ManifestError, match="needs a label set"):
        make_folds(rav, "cross-corpus-matrix")
    with pytest.raises(ManifestError, match=r"'cross4' maps labels per corpus, but .*ravdess\.jsonl is not a joined"):
        make_folds(rav, "speaker-kfold", label_set=load_label_set("cross4"))


def test_cross_corpus_refuses_bad_options(joined) -> None:
    shared = load_label_set("shared", corpora=["emodb", "ravdess"])
    with pytest.raises(ManifestError, match="pass -O test=CORPUS"):
        make_folds(joined, "cross-corpus", label_set=shared)
    with pytest.raises(ManifestError, match="names iemocap, which the manifest does not hold"):
        make_folds(joined, "cross-corpus", label_set=shared, options={"test": "iemocap"})
    with pytest.raises(ManifestError, match="both a training and the test corpus"):
        make_folds(joined, "cross-corpus", label_set=shared, options={"test": "emodb", "train": "emodb,ravdess"})


def test_a_file_in_both_corpora_is_refused_naming_it(pair, tmp_path: Path) -> None:
    rav, emo = (read_manifest(p) for p in pair)
    copy = emo.utterances[0]
    copy.audio = str(rav.audio_path(rav.utterances[4]))  # the same recording listed by the emodb manifest
    joined = join_manifest_objects([rav, emo])
    with pytest.raises(ManifestError, match=r"the audio file .*ravdess_00_04\.wav is test row 'emo0000'"):
        make_folds(joined, "cross-corpus", label_set=load_label_set("cross4"), options={"test": "emodb"})


def test_protocol_show_prints_cells(tmp_path: Path, pair) -> None:
    out = tmp_path / "j.jsonl"
    join_manifests(pair, out)
    result = CliRunner().invoke(
        app, ["protocol", "show", "cross-corpus", str(out), "-l", "cross4", "-O", "test=ravdess"]
    )
    assert result.exit_code == 0, result.output
    assert "emodb-to-ravdess: train on emodb, test on ravdess" in result.output
    assert "ravdess:calm 12" in result.output


# ------------------------------------------------------------------------------------------ real data


def test_ravdess_emodb_cross_corpus_on_real_manifests(ravdess_root: Path, emodb2s_root: Path, tmp_path: Path) -> None:
    from ser.manifests.build import build_manifest

    build_manifest("ravdess", ravdess_root, tmp_path / "rav.jsonl", durations=False)
    build_manifest("emodb", emodb2s_root, tmp_path / "emodb.jsonl", durations=False)
    join_manifests([tmp_path / "rav.jsonl", tmp_path / "emodb.jsonl"], tmp_path / "joined.jsonl")
    joined = read_manifest(tmp_path / "joined.jsonl")
    assert joined.header.corpus == "emodb+ravdess" and len(joined) == 1200 + 535
    assert all(joined.audio_path(u).is_file() for u in joined.utterances[::97])

    cross4 = load_label_set("cross4")
    folds = make_folds(joined, "cross-corpus", label_set=cross4, options={"test": "emodb"})
    (fold,) = folds.folds
    u = folds.utterances
    assert fold.name == "ravdess-to-emodb"
    assert Counter(cross4.class_of(u[i]) for i in fold.test) == {"ang": 127, "hap": 71, "neu": 79, "sad": 62}
    train_counts = Counter(cross4.class_of(u[i]) for i in (*fold.train, *fold.validation))
    assert train_counts == {"ang": 160, "hap": 160, "neu": 80, "sad": 160}
    assert folds.dropped_labels == {
        "ravdess:calm": 160,
        "ravdess:fearful": 160,
        "ravdess:disgust": 160,
        "ravdess:surprised": 160,
        "emodb:boredom": 81,
        "emodb:disgust": 46,
        "emodb:fear": 69,
    }
    assert all(
        u[i].speaker.startswith("ravdess/Actor_") or u[i].speaker.startswith("ravdess/") for i in fold.validation
    )
    test_files = {joined.audio_path(u[i]) for i in fold.test}
    assert not test_files & {joined.audio_path(u[i]) for i in (*fold.train, *fold.validation)}
    assert folds.card.cells == {"ravdess-to-emodb": {"train": ["ravdess"], "test": "emodb"}}

    shared = choose_label_set(joined, "shared").label_set
    assert shared is not None and shared.classes == ("ang", "dis", "fea", "hap", "neu", "sad")
    matrix = make_folds(joined, "cross-corpus-matrix", label_set=shared)
    assert [f.name for f in matrix.folds] == [
        *(f"emodb-to-emodb-{i}" for i in range(1, 6)),
        "emodb-to-ravdess",
        "ravdess-to-emodb",
        *(f"ravdess-to-ravdess-{i}" for i in range(1, 6)),
    ]
    assert matrix.card.n_utterances == 535 - 81 + 1200 - 160 - 160
    assert matrix.dropped_labels == {"ravdess:calm": 160, "ravdess:surprised": 160, "emodb:boredom": 81}
    for f in matrix.folds:
        cell = matrix.card.cells[f.name]
        assert {matrix.utterances[i].extra["corpus"] for i in f.test} == {cell["test"]}
        assert {matrix.utterances[i].extra["corpus"] for i in f.validation} == set(cell["train"])
    cross = matrix.fold("emodb-to-ravdess")
    assert len(cross.test) == 1200 - 320 and len(cross.train) + len(cross.validation) == 535 - 81
