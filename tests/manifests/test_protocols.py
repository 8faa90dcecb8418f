"""Protocols: every preset is leak-free (ids, speakers, sessions, scripts) and deterministic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ser.manifests.labels import LabelSet, load_label_set
from ser.manifests.protocols import PROTOCOLS, ValidationRule, make_folds, save_folds
from ser.manifests.schema import Manifest, ManifestError, ManifestHeader, Utterance

IEMOCAP_LABELS = ["ang", "hap", "exc", "sad", "neu", "fru"]


def iemocap_like() -> Manifest:
    """5 sessions x 2 speakers, improvised and scripted rows, 6 raw labels."""
    rows = []
    for s in range(1, 6):
        for gender in "FM":
            for dialog, script in (("impro01", None), ("script01_1", "script01"), ("script02_2", "script02")):
                for k in range(12):
                    rows.append(
                        Utterance(
                            id=f"Ses0{s}{gender}_{dialog}_{gender}{k:03d}",
                            label=IEMOCAP_LABELS[k % 6],
                            speaker=f"Ses0{s}{gender}",
                            gender=gender,
                            session=f"Ses0{s}",
                            dialog=f"Ses0{s}F_{dialog}",
                            script=script,
                            duration=2.0,
                        )
                    )
    return Manifest(header=ManifestHeader(corpus="iemocap", root="."), utterances=rows)


def acted_like(n_speakers: int = 10, per_speaker: int = 16) -> Manifest:
    rows = [
        Utterance(
            id=f"s{s:02d}_{k:02d}",
            label=["neutral", "angry", "sad", "happy"][k % 4],
            speaker=f"s{s:02d}",
            gender="MF"[s % 2],
            duration=1.0,
        )
        for s in range(n_speakers)
        for k in range(per_speaker)
    ]
    return Manifest(header=ManifestHeader(corpus="toy", root="."), utterances=rows)


def assert_leak_free(fold_set, by: str = "speaker") -> None:
    """An independent re-check of every fold (not the module's own verifier)."""
    u = fold_set.utterances
    for fold in fold_set.folds:
        train, val, test = set(fold.train), set(fold.validation), set(fold.test)
        assert not (train & val) and not (train & test) and not (val & test)
        assert train and val and test
        test_groups = {getattr(u[i], by) for i in test}
        assert test_groups.isdisjoint({getattr(u[i], by) for i in train | val})


@pytest.mark.parametrize("protocol", ["iemocap-loso", "iemocap-loso-script", "session-loso"])
def test_session_presets_hold_out_whole_sessions_and_speakers(protocol: str) -> None:
    fold_set = make_folds(iemocap_like(), protocol, label_set=load_label_set("iemocap4"))
    assert [f.name for f in fold_set.folds] == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    assert fold_set.card.n_utterances == 5 * 2 * 3 * 10  # fru dropped (2 of every 12)
    assert fold_set.dropped_labels == {"fru": 60}
    assert_leak_free(fold_set, "speaker")
    assert_leak_free(fold_set, "session")
    for fold in fold_set.folds:
        assert {fold_set.utterances[i].session for i in fold.test} == {fold.name}
        # validation speakers come from training sessions and are whole speakers
        val_speakers = {fold_set.utterances[i].speaker for i in fold.validation}
        train_speakers = {fold_set.utterances[i].speaker for i in fold.train}
        assert val_speakers and val_speakers.isdisjoint(train_speakers)
        assert {s[-1] for s in val_speakers} == {"F", "M"}  # gender-alternating choice
    assert fold_set.card.speaker_independent


def test_every_row_is_tested_exactly_once_in_loso() -> None:
    fold_set = make_folds(iemocap_like(), "iemocap-loso", label_set=load_label_set("iemocap4"))
    tested = Counter(i for fold in fold_set.folds for i in fold.test)
    assert set(tested.values()) == {1}
    assert len(tested) == fold_set.card.n_utterances
    for fold in fold_set.folds:  # plain LOSO loses no row
        assert len(fold.train) + len(fold.validation) + len(fold.test) == fold_set.card.n_utterances


def test_script_disjoint_variant_removes_test_scripts_from_training() -> None:
    fold_set = make_folds(iemocap_like(), "iemocap-loso-script")
    u = fold_set.utterances
    for fold in fold_set.folds:
        test_scripts = {u[i].script for i in fold.test} - {None}
        assert test_scripts == {"script01", "script02"}
        assert all(u[i].script is None for i in (*fold.train, *fold.validation))
        assert len(fold.train) + len(fold.validation) == 4 * 2 * 12  # improvised rows of 4 sessions


def test_speaker_in_two_sessions_is_refused_with_names() -> None:
    manifest = iemocap_like()
    manifest.utterances[0].session = "Ses02"
    with pytest.raises(ManifestError, match=r"Ses01F in Ses01, Ses02"):
        make_folds(manifest, "iemocap-loso")


def test_speaker_loso_and_determinism() -> None:
    manifest = acted_like()
    a = make_folds(manifest, "speaker-loso", rule=ValidationRule(seed=3))
    b = make_folds(manifest, "speaker-loso", rule=ValidationRule(seed=3))
    c = make_folds(manifest, "speaker-loso", rule=ValidationRule(seed=4))
    assert len(a.folds) == 10
    assert a.folds == b.folds
    assert [f.validation for f in a.folds] != [f.validation for f in c.folds]
    assert_leak_free(a)
    for fold in a.folds:
        assert len(fold.test) == 16
        assert len(fold.validation) >= 0.2 * 144  # whole speakers until 20 % of the pool is reached
        assert len(fold.validation) <= 0.2 * 144 + 16


def test_speaker_kfold_tests_every_speaker_once_with_balanced_sizes() -> None:
    manifest = acted_like(n_speakers=11)
    fold_set = make_folds(manifest, "speaker-kfold", options={"k": 4})
    assert len(fold_set.folds) == 4
    assert_leak_free(fold_set)
    test_speakers = [fold_set.utterances[i].speaker for f in fold_set.folds for i in f.test]
    assert Counter(test_speakers) == Counter({f"s{s:02d}": 16 for s in range(11)})
    sizes = sorted(len(f.test) for f in fold_set.folds)
    assert sizes == [32, 48, 48, 48]
    with pytest.raises(ManifestError, match="k must be between 2 and the number of speakers"):
        make_folds(manifest, "speaker-kfold", options={"k": 12})


TOY_LABELS = LabelSet(
    name="toy4",
    classes=("neu", "ang", "sad", "hap"),
    mapping={"neutral": "neu", "angry": "ang", "sad": "sad", "happy": "hap"},
)


def skewed_like(n_speakers: int = 10) -> Manifest:
    """Per speaker 8 neutral, 4 angry, 2 sad, 2 happy rows (classes of very different sizes)."""
    labels = ["neutral"] * 8 + ["angry"] * 4 + ["sad"] * 2 + ["happy"] * 2
    rows = [
        Utterance(id=f"s{s:02d}_{k:02d}", label=label, speaker=f"s{s:02d}", gender="MF"[s % 2], duration=1.0)
        for s in range(n_speakers)
        for k, label in enumerate(labels)
    ]
    return Manifest(header=ManifestHeader(corpus="toy", root="."), utterances=rows)


def test_utterance_validation_is_stratified_and_from_training_speakers_only() -> None:
    fold_set = make_folds(
        skewed_like(), "speaker-loso", label_set=TOY_LABELS, rule=ValidationRule(by="utterance", fraction=0.25)
    )
    u = fold_set.utterances
    for fold in fold_set.folds:
        test_speakers = {u[i].speaker for i in fold.test}
        assert test_speakers.isdisjoint(u[i].speaker for i in (*fold.train, *fold.validation))
        pool = Counter(TOY_LABELS.class_of(u[i]) for i in (*fold.train, *fold.validation))
        assert pool == {"neu": 72, "ang": 36, "sad": 18, "hap": 18}  # 9 training speakers
        held = Counter(TOY_LABELS.class_of(u[i]) for i in fold.validation)
        # a quarter of every class (round half to even: 4.5 -> 4), not a quarter of the pool at random
        assert held == {"neu": 18, "ang": 9, "sad": 4, "hap": 4}
        assert len({u[i].speaker for i in fold.validation}) > 1  # utterances, not whole speakers
    # Without a label set the share is taken of the whole pool: the class counts then vary by fold.
    plain = make_folds(skewed_like(), "speaker-loso", rule=ValidationRule(by="utterance", fraction=0.25))
    per_fold = {
        tuple(sorted(Counter(TOY_LABELS.class_of(plain.utterances[i]) for i in f.validation).items()))
        for f in plain.folds
    }
    assert all(len(f.validation) == 36 for f in plain.folds) and len(per_fold) > 1


def test_official_split_uses_official_validation_and_reports_speaker_overlap() -> None:
    rows = [
        Utterance(id=f"{split}{k}", label="joy", speaker=f"spk{k % 3}", split=split)
        for split in ("train", "validation", "test")
        for k in range(9)
    ]
    manifest = Manifest(header=ManifestHeader(corpus="meld", root="."), utterances=rows)
    fold_set = make_folds(manifest, "official")
    (fold,) = fold_set.folds
    assert fold.validation == tuple(f"validation{k}" for k in range(9))
    assert fold.test == tuple(f"test{k}" for k in range(9))
    assert not fold_set.card.speaker_independent
    assert any("speaker-dependent" in note for note in fold_set.card.notes)


def test_official_without_validation_carves_it_from_training_speakers() -> None:
    rows = [
        Utterance(id=f"{split}{k}", label="joy", speaker=f"{split}-spk{k % 5}", split=split)
        for split in ("train", "test")
        for k in range(20)
    ]
    manifest = Manifest(header=ManifestHeader(corpus="x", root="."), utterances=rows)
    (fold,) = make_folds(manifest, "official").folds
    assert fold.validation and all(i.startswith("train") for i in fold.validation)
    with pytest.raises(ManifestError, match="needs rows with split 'train' and 'test2'"):
        make_folds(manifest, "official", options={"test_split": "test2"})


def test_official_tested_on_the_validation_split_carves_validation_from_training() -> None:
    """MELD with only train and dev on disk: test on dev (``test_split=validation``) must not also
    select on dev."""
    rows = [
        Utterance(id=f"{split}{k}", label="joy", speaker=f"spk{k % 5}", split=split)
        for split in ("train", "validation")
        for k in range(20)
    ]
    manifest = Manifest(header=ManifestHeader(corpus="meld", root="."), utterances=rows)
    (fold,) = make_folds(manifest, "official", options={"test_split": "validation"}).folds
    assert fold.test == tuple(f"validation{k}" for k in range(20))
    assert fold.validation and all(i.startswith("train") for i in fold.validation)
    assert set(fold.validation).isdisjoint(fold.train) and set(fold.test).isdisjoint(fold.validation)


def test_missing_fields_and_unknown_protocol_are_clear_errors() -> None:
    manifest = acted_like()
    with pytest.raises(ManifestError, match="needs a session for every row"):
        make_folds(manifest, "session-loso")
    with pytest.raises(ManifestError, match="unknown protocol 'loso'"):
        make_folds(manifest, "loso")
    assert set(PROTOCOLS) >= {"iemocap-loso", "iemocap-loso-script", "speaker-loso", "speaker-kfold", "official"}


def test_validation_rule_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        ValidationRule(fraction=1.0)
    with pytest.raises(ValueError, match="'speaker' or 'utterance'"):
        ValidationRule(by="dialog")  # type: ignore[arg-type]


def _validation_speakers(fold_set) -> list[tuple[str, ...]]:
    return [tuple(sorted({fold_set.utterances[i].speaker for i in f.validation})) for f in fold_set.folds]


@pytest.mark.parametrize(
    ("protocol", "manifest", "options"),
    [
        ("speaker-kfold", acted_like, {"k": 5}),
        ("session-loso", iemocap_like, {}),
        ("speaker-loso", acted_like, {}),
    ],
)
def test_same_seed_same_folds_other_seed_other_validation(protocol: str, manifest, options: dict) -> None:
    a = make_folds(manifest(), protocol, rule=ValidationRule(seed=11), options=options)
    b = make_folds(manifest(), protocol, rule=ValidationRule(seed=11), options=options)
    c = make_folds(manifest(), protocol, rule=ValidationRule(seed=12), options=options)
    assert a.folds == b.folds and a.card == b.card
    assert _validation_speakers(a) != _validation_speakers(c)
    assert_leak_free(a)
    assert_leak_free(c)


def test_speaker_kfold_seed_also_deals_the_test_speakers() -> None:
    def groups(seed: int) -> set[frozenset[str]]:
        folds = make_folds(acted_like(), "speaker-kfold", rule=ValidationRule(seed=seed), options={"k": 5}).folds
        return {frozenset(i.split("_")[0] for i in f.test) for f in folds}

    assert groups(0) == groups(0)
    assert len({frozenset(groups(seed)) for seed in range(4)}) > 1  # other seeds, other test groups
    for seed in range(4):  # ... each a partition of the 10 speakers into 5 pairs
        assert sorted(len(g) for g in groups(seed)) == [2] * 5
        assert set().union(*groups(seed)) == {f"s{s:02d}" for s in range(10)}


def test_utterance_validation_is_deterministic_per_seed() -> None:
    def validation(seed: int) -> list[tuple[str, ...]]:
        fold_set = make_folds(
            skewed_like(),
            "speaker-loso",
            label_set=TOY_LABELS,
            rule=ValidationRule(by="utterance", fraction=0.25, seed=seed),
        )
        return [f.validation for f in fold_set.folds]

    assert validation(5) == validation(5)
    other = validation(6)
    assert other != validation(5)
    assert [len(v) for v in other] == [len(v) for v in validation(5)]  # same stratified sizes, other rows


def test_empty_validation_is_refused_with_the_fold_and_the_fix() -> None:
    # one row per class in each training pool: a stratified share of 20 % holds nothing out
    rows = [
        Utterance(id=f"s{s}_{label}", label=label, speaker=f"s{s}")
        for s in range(2)
        for label in ("neutral", "angry", "sad", "happy")
    ]
    manifest = Manifest(header=ManifestHeader(corpus="toy", root="."), utterances=rows)
    with pytest.raises(
        ManifestError,
        match=r"fold s0: the validation set is empty \(4 training rows, none could "
        r"be held out.*raise --val-fraction \(val_fraction\), switch --val-by",
    ):
        make_folds(manifest, "speaker-loso", label_set=TOY_LABELS, rule=ValidationRule(by="utterance"))


def test_empty_training_set_is_refused_with_the_fold_and_the_fix() -> None:
    rows = [
        Utterance(
            id=f"Ses0{s}F_script01_{k}",
            label="ang",
            speaker=f"Ses0{s}F",
            gender="F",
            session=f"Ses0{s}",
            script="script01",
        )
        for s in (1, 2)
        for k in range(3)
    ]
    manifest = Manifest(header=ManifestHeader(corpus="iemocap", root="."), utterances=rows)
    with pytest.raises(ManifestError, match=r"fold Ses01: the training set is empty .*lower --val-fraction"):
        make_folds(manifest, "iemocap-loso-script")


def test_preset_options_are_checked() -> None:
    manifest = acted_like()
    with pytest.raises(
        ManifestError,
        match=r"protocol 'speaker-kfold': option k must be a whole number, not "
        r"'abc'; pass e.g. -O k=5",
    ):
        make_folds(manifest, "speaker-kfold", options={"k": "abc"})
    with pytest.raises(ManifestError, match=r"option k must be a whole number, not 2\.5"):
        make_folds(manifest, "speaker-kfold", options={"k": 2.5})
    assert len(make_folds(manifest, "speaker-kfold", options={"k": "3"}).folds) == 3
    with pytest.raises(ManifestError, match=r"protocol 'speaker-loso' has no option k; it takes no options"):
        make_folds(manifest, "speaker-loso", options={"k": 3})
    with pytest.raises(ManifestError, match=r"protocol 'official' has no option kk; it takes test_split"):
        make_folds(manifest, "official", options={"kk": 3})


def test_unknown_fold_name_is_a_manifest_error() -> None:
    fold_set = make_folds(acted_like(n_speakers=3), "speaker-loso")
    assert fold_set.fold("s01").name == "s01"
    with pytest.raises(
        ManifestError,
        match=r"protocol 'speaker-loso' has no fold 'nope'; its folds are s00, s01, "
        r"s02",
    ):
        fold_set.fold("nope")


def test_save_folds_writes_json_and_refuses_unwritable_paths(tmp_path: Path) -> None:
    fold_set = make_folds(acted_like(n_speakers=3), "speaker-loso")
    save_folds(fold_set, tmp_path / "folds.json")
    saved = json.loads((tmp_path / "folds.json").read_text())
    assert [f["name"] for f in saved["folds"]] == ["s00", "s01", "s02"]
    assert saved["folds"][0]["test"] == list(fold_set.folds[0].test)
    assert [p.name for p in tmp_path.iterdir()] == ["folds.json"]
    with pytest.raises(
        ManifestError,
        match=f"cannot write the folds to {tmp_path}/missing/f.json: the folder "
        f"{tmp_path}/missing does not exist; create it or choose another path",
    ):
        save_folds(fold_set, tmp_path / "missing" / "f.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ManifestError, match=r"cannot write the folds to .*dir.json \(Is a directory\)"):
        save_folds(fold_set, tmp_path / "dir.json")
