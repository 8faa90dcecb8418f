"""Rows whose speaker is an empty string count as rows without a speaker (as ``_require`` treats them),
not as one shared pseudo-speaker: in the speaker-overlap check of the official split, in the
speaker-held-out validation carving and in the check that no speaker spans two sessions."""

from __future__ import annotations

from ser.manifests.protocols import ValidationRule, carve_validation, make_folds
from ser.manifests.schema import Manifest, ManifestHeader, Utterance


def _rows(split: str, speakers: tuple[str, ...], n: int) -> list[Utterance]:
    return [
        Utterance(id=f"{split}_{s or 'none'}_{k}", label="neu", speaker=s, split=split)
        for s in speakers
        for k in range(n)
    ]


def test_empty_speakers_are_not_shared_between_test_and_training() -> None:
    rows = _rows("train", ("a", "b", ""), 6) + _rows("test", ("c", ""), 6)
    manifest = Manifest(header=ManifestHeader(corpus="toy", root="."), utterances=rows)
    card = make_folds(manifest, "official", rule=ValidationRule(by="speaker")).card
    assert card.speaker_independent
    assert not any("shared" in note for note in card.notes)


def test_speaker_validation_never_holds_out_the_rows_without_a_speaker_as_one_speaker() -> None:
    pool = _rows("train", ("a", "b", "c", ""), 6)
    for seed in range(20):
        train, validation, how = carve_validation(pool, ValidationRule(by="speaker", seed=seed), "f", None)
        assert how.startswith("random utterances"), how  # not every row has a speaker: utterance hold-out
        assert {u.id for u in train} | {u.id for u in validation} == {u.id for u in pool}


def test_rows_without_a_speaker_in_several_sessions_are_no_speaker_shared_between_sessions() -> None:
    rows = [
        Utterance(id=f"{session}_{s or 'none'}_{k}", label="neu", speaker=s, session=session)
        for session, speakers in (("s1", ("a", "")), ("s2", ("b", "")), ("s3", ("c", "")))
        for s in speakers
        for k in range(6)
    ]
    manifest = Manifest(header=ManifestHeader(corpus="toy", root="."), utterances=rows)
    fold_set = make_folds(manifest, "session-loso", rule=ValidationRule(by="utterance"))
    assert [fold.name for fold in fold_set.folds] == ["s1", "s2", "s3"]
    for fold in fold_set.folds:
        assert {fold_set.utterances[i].session for i in fold.test} == {fold.name}
