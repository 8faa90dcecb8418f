"""Evaluation protocols: turn a manifest into folds of (train, validation, test) utterance ids.

Rules that hold for every preset and are checked every time folds are made:

* train, validation and test of a fold share no id;
* validation is carved from the training pool only (never from the test fold);
* for speaker-independent presets no speaker of the test fold is in its train or validation set,
  and for the script-disjoint preset no script of the test fold is either;
* the same manifest, options and seed always give the same folds.

Presets (``PROTOCOLS``, one [`ProtocolPreset`][ser.manifests.protocols.ProtocolPreset] record each):

``iemocap-loso``        5 folds, one IEMOCAP session out each (speaker-independent).
``iemocap-loso-script`` the same, but every scripted utterance whose script also occurs in the
                        test session is removed from train and validation (text-independent).
``session-loso``        one fold per ``session`` value, any corpus.
``speaker-loso``        one fold per speaker.
``speaker-kfold``       speakers dealt into k folds of about equal size (``k`` option, default 5).
``official``            the corpus' own split field (MELD, MSP-Podcast, ESD); the official
                        validation split when it exists, else validation carved from training
                        speakers. Speaker overlap between official splits is reported, not hidden.
``cross-corpus``        joined manifests (``ser manifest join``): train on some corpora (``train``
                        option, default every other one), test on every row of one (``test``);
                        validation carved from the training corpora's speakers.
``cross-corpus-matrix`` every ordered pair A -> B of the joined corpora, plus speaker k-fold
                        folds within each corpus on the diagonal (``k`` option, default 5).

Cross-corpus presets also check that no audio file (same resolved path and segment) is in a test fold and
in its train or validation set, and record per fold which corpora train and test it
(``ProtocolCard.cells``).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ser.errors import UnknownNameError, unknown_name
from ser.manifests.corpora import CORPORA
from ser.manifests.labels import LabelSet, apply_label_set, corpus_of
from ser.manifests.schema import Manifest, ManifestError, Utterance
from ser.options import OptionError, annotation_of, coerce

ValidationBy = Literal["speaker", "utterance"]


@dataclass(frozen=True, kw_only=True)
class Fold:
    """One train / validation / test partition, as utterance ids in manifest order."""

    name: str
    """The fold's name (the held-out speaker, session or split)."""
    train: tuple[str, ...]
    """Ids of the training rows."""
    validation: tuple[str, ...]
    """Ids of the validation rows (carved from the training pool)."""
    test: tuple[str, ...]
    """Ids of the test rows."""

    def split_ids(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True, kw_only=True)
class ValidationRule:
    """How validation data are carved out of a fold's training pool."""

    fraction: float = 0.2
    """Share of the training pool's utterances moved to validation."""
    by: ValidationBy = "speaker"
    """``speaker``: hold out whole training speakers (gender-alternating, about ``fraction`` of the
    utterances), so validation is speaker-independent like the test fold. ``utterance``: a random
    stratified-by-class ``fraction`` of the training utterances."""
    seed: int = 0
    """Seed of the (deterministic) choice; each fold mixes its own name into it."""

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"validation fraction must be between 0 and 1 (exclusive), got {self.fraction}")
        if self.by not in ("speaker", "utterance"):
            raise ValueError(f"validation rule 'by' must be 'speaker' or 'utterance', got {self.by!r}")


@dataclass(kw_only=True)
class ProtocolCard:
    """Everything a reader needs to know to interpret (and reproduce) a result."""

    protocol: str
    """The protocol preset."""
    corpus: str
    """The manifest's corpus."""
    label_set: str | None
    """The label set applied (None: raw labels)."""
    classes: list[str] | None
    """Its class names (None without a label set)."""
    folds: list[str]
    """The fold names."""
    validation: str
    """How validation rows are chosen, in words."""
    seed: int
    """Seed of the validation carving."""
    speaker_independent: bool
    """True when no test speaker is in its fold's training or validation rows."""
    n_utterances: int
    """Rows the protocol used."""
    notes: list[str] = field(default_factory=list)
    """Remarks for the reader."""
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Cross-corpus presets: fold name -> ``{"train": [training corpora], "test": test corpus}`` (read from
    the fold's rows); empty for other protocols."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FoldSet:
    """The folds of a protocol applied to a manifest, plus its card and the rows it used."""

    card: ProtocolCard
    """The protocol card."""
    folds: list[Fold]
    """The folds, in protocol order."""
    utterances: dict[str, Utterance]
    """Id -> utterance of every row the protocol considered (after label-set filtering)."""
    dropped_labels: Counter[str] = field(default_factory=Counter)
    """Raw label -> rows dropped by the label set (``corpus:label`` for a joined manifest)."""

    def fold(self, name: str) -> Fold:
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise ManifestError(
            f"protocol {self.card.protocol!r} has no fold {name!r}; its folds are "
            f"{', '.join(f.name for f in self.folds)}"
        )

    def to_json(self) -> str:
        """The card and every fold's id lists (to publish or reuse the exact split)."""
        return json.dumps(
            {
                "card": self.card.to_dict(),
                "folds": [{"name": f.name, **{k: list(v) for k, v in f.split_ids().items()}} for f in self.folds],
            },
            indent=1,
            ensure_ascii=False,
        )


# --------------------------------------------------------------------------------------------
# Speakers


def _has_speaker(utt: Utterance) -> bool:
    """Whether the row names a speaker (``None`` and ``""`` both mean: no speaker)."""
    return bool(utt.speaker)


def _speaker_of(utt: Utterance) -> str:
    """The row's speaker, where every row must have one (a [`ManifestError`][ser.manifests.schema.ManifestError] names
    the row otherwise)."""
    if not utt.speaker:
        raise ManifestError(
            f"row {utt.id!r} has no speaker, but splitting by speaker needs one for every row; fill its "
            "speaker field in the manifest, or hold out validation by utterance (--val-by utterance) or "
            "choose a protocol that does not split by speaker"
        )
    return utt.speaker


def _speakers(utterances: Iterable[Utterance]) -> set[str]:
    """The distinct speakers of ``utterances``; rows without a speaker add none."""
    return {utt.speaker for utt in utterances if utt.speaker}


# --------------------------------------------------------------------------------------------
# Validation carving


def _fold_rng(rule: ValidationRule, fold_name: str) -> random.Random:
    return random.Random(f"{rule.seed}:{fold_name}")


def _speaker_holdout(pool: list[Utterance], rule: ValidationRule, rng: random.Random) -> set[str]:
    """Training speakers to hold out: gender-alternating, until ``fraction`` of the pool is reached.
    Every row of ``pool`` must have a speaker."""
    counts = Counter(_speaker_of(u) for u in pool)
    gender = {_speaker_of(u): (u.gender or "?") for u in pool}
    by_gender: dict[str, list[str]] = {}
    for speaker in sorted(counts):
        by_gender.setdefault(gender[speaker], []).append(speaker)
    for speakers in by_gender.values():
        rng.shuffle(speakers)
    order: list[str] = []
    groups = [by_gender[g] for g in sorted(by_gender)]
    rng.shuffle(groups)
    while any(groups):
        for speakers in groups:
            if speakers:
                order.append(speakers.pop())
    target = rule.fraction * len(pool)
    chosen: set[str] = set()
    total = 0
    for speaker in order[:-1]:  # always leave at least one speaker to train on
        if total >= target:
            break
        chosen.add(speaker)
        total += counts[speaker]
    return chosen


def _stratified_holdout(
    pool: list[Utterance], rule: ValidationRule, rng: random.Random, label_set: LabelSet | None
) -> set[str]:
    """A ``fraction`` of each class (or of everything, without a label set), chosen at random."""
    strata: dict[str | None, list[str]] = {}
    for utt in pool:
        key = label_set.class_of(utt) if label_set else None
        strata.setdefault(key, []).append(utt.id)
    chosen: set[str] = set()
    for key in sorted(strata, key=str):
        ids = strata[key]
        rng.shuffle(ids)
        take = round(rule.fraction * len(ids))
        if len(ids) >= 2:
            take = min(max(take, 1), len(ids) - 1)
        chosen.update(ids[:take])
    return chosen


def carve_validation(
    pool: list[Utterance], rule: ValidationRule, fold_name: str, label_set: LabelSet | None
) -> tuple[list[Utterance], list[Utterance], str]:
    """Split a training pool into (train, validation); also return how it was done, in words."""
    rng = _fold_rng(rule, fold_name)
    if rule.by == "speaker" and all(_has_speaker(u) for u in pool) and len(_speakers(pool)) >= 2:
        held = _speaker_holdout(pool, rule, rng)
        train = [u for u in pool if u.speaker not in held]
        validation = [u for u in pool if u.speaker in held]
        return train, validation, f"speakers {', '.join(sorted(held))}"
    held_ids = _stratified_holdout(pool, rule, rng, label_set)
    train = [u for u in pool if u.id not in held_ids]
    validation = [u for u in pool if u.id in held_ids]
    how = "stratified utterances" if label_set else "random utterances"
    if rule.by == "speaker":
        if all(_has_speaker(u) for u in pool):
            how += " (too few training speakers to hold any out)"
        else:
            how += " (not every training row has a speaker)"
    return train, validation, how


# --------------------------------------------------------------------------------------------
# Presets


def _require(utterances: Sequence[Utterance], attribute: str, protocol: str) -> None:
    missing = [u.id for u in utterances if getattr(u, attribute) in (None, "")]
    if missing:
        shown = ", ".join(missing[:5])
        raise ManifestError(
            f"protocol {protocol!r} needs a {attribute} for every row, but {len(missing)} rows "
            f"have none (e.g. {shown}); fill the field in the manifest or choose another "
            "protocol"
        )


def _check_groups_partition_speakers(utterances: Sequence[Utterance], group: str, protocol: str) -> None:
    """Refuse a manifest in which one speaker appears in two groups (that would leak speakers)."""
    groups_of: dict[str, set[str]] = {}
    for utt in utterances:
        if utt.speaker:
            groups_of.setdefault(utt.speaker, set()).add(str(getattr(utt, group)))
    shared = {spk: sorted(g) for spk, g in groups_of.items() if len(g) > 1}
    if shared:
        shown = "; ".join(f"{spk} in {', '.join(g)}" for spk, g in list(shared.items())[:5])
        raise ManifestError(
            f"protocol {protocol!r}: {len(shared)} speakers occur in more than one {group} "
            f"({shown}); a held-out {group} would share speakers with training. Fix the "
            f"speaker or {group} fields, or use speaker-loso / speaker-kfold"
        )


def _leave_one_group_out(
    utterances: list[Utterance],
    group: str,
    rule: ValidationRule,
    label_set: LabelSet | None,
    exclude_scripts: bool = False,
) -> tuple[list[Fold], list[str]]:
    values = sorted({str(getattr(u, group)) for u in utterances})
    if len(values) < 2:
        raise ManifestError(
            f"leaving one {group} out needs at least 2 distinct {group} values; the manifest has {values}"
        )
    folds: list[Fold] = []
    notes: list[str] = []
    for value in values:
        test = [u for u in utterances if str(getattr(u, group)) == value]
        pool = [u for u in utterances if str(getattr(u, group)) != value]
        if exclude_scripts:
            test_scripts = {u.script for u in test if u.script}
            before = len(pool)
            pool = [u for u in pool if not (u.script and u.script in test_scripts)]
            notes.append(f"{value}: removed {before - len(pool)} training rows sharing a script with the test fold")
        train, validation, how = carve_validation(pool, rule, value, label_set)
        notes.append(f"{value}: validation = {how}")
        folds.append(Fold(name=value, train=_ids(train), validation=_ids(validation), test=_ids(test)))
    return folds, notes


def _ids(utterances: Sequence[Utterance]) -> tuple[str, ...]:
    return tuple(u.id for u in utterances)


def _session_loso(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    _require(utterances, "session", name)
    _check_groups_partition_speakers(utterances, "session", name)
    return _leave_one_group_out(
        utterances, "session", rule, label_set, exclude_scripts=options.get("exclude_scripts", False)
    )


def _iemocap_loso(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    return _session_loso(utterances, rule, label_set, options, name)


def _iemocap_loso_script(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    return _session_loso(utterances, rule, label_set, {**options, "exclude_scripts": True}, name)


def _speaker_loso(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    _require(utterances, "speaker", name)
    return _leave_one_group_out(utterances, "speaker", rule, label_set)


def _deal_speakers(utterances: list[Utterance], k: int, seed: int, what: str) -> list[list[str]]:
    """Speakers dealt into ``k`` groups of about equal size (largest first, each to the smallest group)."""
    counts = Counter(_speaker_of(u) for u in utterances)
    if not 2 <= k <= len(counts):
        raise ManifestError(f"{what}: k must be between 2 and the number of speakers ({len(counts)}), got {k}")
    speakers = sorted(counts)
    random.Random(f"{seed}:speaker-kfold").shuffle(speakers)
    # Largest speakers first (stable after the seeded shuffle), each to the currently smallest fold.
    speakers.sort(key=lambda s: -counts[s])
    members: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for speaker in speakers:
        target = min(range(k), key=lambda i: (sizes[i], i))
        members[target].append(speaker)
        sizes[target] += counts[speaker]
    return members


def _kfold_folds(
    utterances: list[Utterance],
    members: list[list[str]],
    rule: ValidationRule,
    label_set: LabelSet | None,
    names: list[str],
) -> tuple[list[Fold], list[str]]:
    fold_of = {spk: i for i, group in enumerate(members) for spk in group}
    folds: list[Fold] = []
    notes: list[str] = []
    for i, fold_name in enumerate(names):
        test = [u for u in utterances if fold_of[_speaker_of(u)] == i]
        pool = [u for u in utterances if fold_of[_speaker_of(u)] != i]
        train, validation, how = carve_validation(pool, rule, fold_name, label_set)
        notes.append(f"{fold_name}: test speakers {', '.join(sorted(members[i]))}; validation = {how}")
        folds.append(Fold(name=fold_name, train=_ids(train), validation=_ids(validation), test=_ids(test)))
    return folds, notes


def _speaker_kfold(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    _require(utterances, "speaker", name)
    k = options["k"]
    members = _deal_speakers(utterances, k, rule.seed, "speaker-kfold")
    return _kfold_folds(utterances, members, rule, label_set, [f"fold{i + 1}" for i in range(k)])


def _official(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    _require(utterances, "split", name)
    test_split = options["test_split"]
    by_split: dict[str, list[Utterance]] = {}
    for utt in utterances:
        by_split.setdefault(str(utt.split), []).append(utt)
    if "train" not in by_split or test_split not in by_split:
        raise ManifestError(
            f"protocol 'official' needs rows with split 'train' and '{test_split}'; the manifest "
            f"has splits {sorted(by_split)}. Add the missing split's files or pick another "
            "protocol"
        )
    notes: list[str] = []
    if "validation" in by_split and test_split != "validation":
        train, validation = by_split["train"], by_split["validation"]
        notes.append("validation = the official validation split")
    else:
        train, validation, how = carve_validation(by_split["train"], rule, "official", label_set)
        notes.append(f"validation = {how} of the official training split")
    unused = sorted(set(by_split) - {"train", "validation", test_split})
    if unused:
        notes.append(f"rows of splits {', '.join(unused)} are not used")
    return [
        Fold(name=test_split, train=_ids(train), validation=_ids(validation), test=_ids(by_split[test_split]))
    ], notes


def _by_corpus(utterances: list[Utterance], name: str) -> dict[str, list[Utterance]]:
    """The rows of a joined manifest per corpus (sorted by corpus); a manifest that is not joined is refused."""
    missing = [u.id for u in utterances if corpus_of(u) is None]
    if missing:
        raise ManifestError(
            f"protocol {name!r} needs a joined manifest, but {len(missing)} rows have no extra.corpus (e.g. "
            f"{', '.join(missing[:3])}); join the per-corpus manifests first: "
            "`ser manifest join A.jsonl B.jsonl -o joined.jsonl`"
        )
    groups: dict[str, list[Utterance]] = {}
    for utt in utterances:
        groups.setdefault(str(corpus_of(utt)), []).append(utt)
    if len(groups) < 2:
        raise ManifestError(
            f"protocol {name!r} needs rows of two or more corpora, but every row left is of "
            f"{', '.join(groups) or 'no corpus'}; join another corpus (`ser manifest join`), or check that "
            "the label set keeps rows of each corpus"
        )
    return dict(sorted(groups.items()))


def _corpus_list(text: str, known: Mapping[str, object], option: str, name: str) -> list[str]:
    chosen = sorted({part.strip() for part in text.split(",") if part.strip()})
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ManifestError(
            f"protocol {name!r}: option {option} names {', '.join(unknown)}, which the manifest does not hold "
            f"(after the label set); its corpora: {', '.join(known)}"
        )
    return chosen


def _cross_fold(
    groups: dict[str, list[Utterance]],
    train_corpora: list[str],
    test_corpus: str,
    rule: ValidationRule,
    label_set: LabelSet | None,
) -> tuple[Fold, str]:
    fold_name = f"{'+'.join(train_corpora)}-to-{test_corpus}"
    pool = [u for corpus in train_corpora for u in groups[corpus]]
    train, validation, how = carve_validation(pool, rule, fold_name, label_set)
    fold = Fold(name=fold_name, train=_ids(train), validation=_ids(validation), test=_ids(groups[test_corpus]))
    return fold, f"{fold_name}: validation = {how} (training corpora only)"


def _cross_corpus(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    groups = _by_corpus(utterances, name)
    if not options["test"]:
        raise ManifestError(
            f"protocol {name!r} needs the test corpus: pass -O test=CORPUS (one of {', '.join(groups)})"
        )
    tests = _corpus_list(options["test"], groups, "test", name)
    if len(tests) != 1:
        raise ManifestError(f"protocol {name!r}: -O test takes one corpus, got {options['test']!r}")
    test_corpus = tests[0]
    if options["train"]:
        train_corpora = _corpus_list(options["train"], groups, "train", name)
    else:
        train_corpora = [c for c in groups if c != test_corpus]
    if test_corpus in train_corpora:
        raise ManifestError(
            f"protocol {name!r}: {test_corpus} is both a training and the test corpus; drop it from -O train "
            "(within-corpus folds are the diagonal of cross-corpus-matrix)"
        )
    fold, note = _cross_fold(groups, train_corpora, test_corpus, rule, label_set)
    return [fold], [note]


def _cross_corpus_matrix(
    utterances: list[Utterance], rule: ValidationRule, label_set: LabelSet | None, options: dict[str, Any], name: str
) -> tuple[list[Fold], list[str]]:
    groups = _by_corpus(utterances, name)
    k = options["k"]
    folds: list[Fold] = []
    notes: list[str] = []
    for train_corpus in groups:
        for test_corpus in groups:
            if train_corpus != test_corpus:
                fold, note = _cross_fold(groups, [train_corpus], test_corpus, rule, label_set)
                folds.append(fold)
                notes.append(note)
                continue
            rows = groups[train_corpus]
            _require(rows, "speaker", name)
            members = _deal_speakers(rows, k, rule.seed, f"{name} on {train_corpus}")
            names = [f"{train_corpus}-to-{train_corpus}-{i + 1}" for i in range(k)]
            diagonal, diagonal_notes = _kfold_folds(rows, members, rule, label_set, names)
            folds += diagonal
            notes += diagonal_notes
    return folds, notes


ProtocolFunction = Callable[
    [list[Utterance], ValidationRule, "LabelSet | None", dict[str, Any], str], tuple[list[Fold], list[str]]
]


class UnknownProtocolError(ManifestError, UnknownNameError):
    """A protocol name no preset has (a ``ManifestError`` for the manifest checks that catch those)."""


@dataclass(frozen=True)
class ProtocolPreset:
    """One registry entry."""

    function: ProtocolFunction
    """The function that makes the folds."""
    description: str
    """One line on the protocol (``ser protocol list``)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The options (``-O KEY=VALUE``) the preset takes, with their defaults; a value is coerced to the
    type of its default (``ser.options.annotation_of``)."""
    speaker_independent: bool = False
    """No speaker of a test fold is in its train or validation set, by design (checked every time)."""
    cross_corpus: bool = False
    """Folds over a joined manifest: a label set is required, no audio file may be in two roles, and the
    card records each fold's training and test corpora."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


PROTOCOLS: dict[str, ProtocolPreset] = {
    "iemocap-loso": ProtocolPreset(
        _iemocap_loso,
        "IEMOCAP leave-one-session-out (5 folds), validation from training speakers",
        speaker_independent=True,
    ),
    "iemocap-loso-script": ProtocolPreset(
        _iemocap_loso_script,
        "IEMOCAP leave-one-session-out, scripts of the test session removed from training",
        speaker_independent=True,
    ),
    "session-loso": ProtocolPreset(
        _session_loso,
        "leave one session out, any corpus with a session field",
        {"exclude_scripts": False},
        speaker_independent=True,
    ),
    "speaker-loso": ProtocolPreset(
        _speaker_loso, "leave one speaker out (one fold per speaker)", speaker_independent=True
    ),
    "speaker-kfold": ProtocolPreset(
        _speaker_kfold,
        "speakers dealt into k folds of equal size",
        {"k": 5},
        speaker_independent=True,
    ),
    "official": ProtocolPreset(
        _official,
        "the corpus' official train/validation/test split (MELD, MSP-Podcast, ESD)",
        {"test_split": "test"},
    ),
    "cross-corpus": ProtocolPreset(
        _cross_corpus,
        "joined manifest: train on corpora (default: all but the test one), test on every row of one corpus",
        {"train": "", "test": ""},
        speaker_independent=True,
        cross_corpus=True,
    ),
    "cross-corpus-matrix": ProtocolPreset(
        _cross_corpus_matrix,
        "joined manifest: every ordered corpus pair A-to-B, speaker k-fold within each corpus on the diagonal",
        {"k": 5},
        speaker_independent=True,
        cross_corpus=True,
    ),
}


def protocol_preset(name: str) -> ProtocolPreset:
    """The record of protocol ``name`` (an [`UnknownNameError`][ser.errors.UnknownNameError] names the protocols)."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise unknown_name("protocol", name, PROTOCOLS, UnknownProtocolError) from None


def protocol_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every option of protocol ``name``: its defaults with ``options`` on top, each coerced to the
    type of its default (``-O k=10`` -> 10); unknown options and bad values are a
    [`ManifestError`][ser.manifests.schema.ManifestError]."""
    preset = protocol_preset(name)
    given = dict(options or {})
    unknown = sorted(set(given) - set(preset.options))
    if unknown:
        takes = ", ".join(preset.options) or "no options"
        raise ManifestError(f"protocol {name!r} has no option {', '.join(unknown)}; it takes {takes}")
    resolved = dict(preset.options)
    for key, value in given.items():
        try:
            resolved[key] = coerce(value, annotation_of(preset.options[key]), f"protocol {name!r}: option {key}")
        except OptionError as err:
            raise ManifestError(f"{err}; pass e.g. -O {key}={preset.options[key]}") from None
    return resolved


# --------------------------------------------------------------------------------------------
# Entry point and checks


def verify_folds(
    folds: Sequence[Fold], utterances: dict[str, Utterance], *, disjoint_fields: Sequence[str] = ()
) -> None:
    """Raise if any fold leaks: shared ids, or a value of ``disjoint_fields`` (e.g. ``speaker``)
    present in both the test fold and its train or validation set (``None`` and ``""`` are no value)."""
    for fold in folds:
        train, validation, test = set(fold.train), set(fold.validation), set(fold.test)
        for a_name, a, b_name, b in (
            ("train", train, "validation", validation),
            ("train", train, "test", test),
            ("validation", validation, "test", test),
        ):
            shared = a & b
            if shared:
                raise AssertionError(
                    f"fold {fold.name}: {len(shared)} ids in both {a_name} and {b_name}, e.g. {sorted(shared)[:3]}"
                )
        if not test:
            raise ManifestError(f"fold {fold.name}: the test set is empty")
        if not train:
            raise ManifestError(
                f"fold {fold.name}: the training set is empty ({len(validation)} validation, "
                f"{len(test)} test rows); lower --val-fraction (val_fraction), or use a protocol "
                "or label set that leaves more rows outside the test fold"
            )
        if not validation:
            raise ManifestError(
                f"fold {fold.name}: the validation set is empty ({len(train)} training rows, "
                "none could be held out: every class has a single row, or the training pool is one "
                "row); raise --val-fraction (val_fraction), switch --val-by (val_by) between "
                "speaker and utterance, or use a label set with more rows per class"
            )
        for attr in disjoint_fields:
            test_values = {getattr(utterances[i], attr) for i in test} - {None, ""}
            seen = {getattr(utterances[i], attr) for i in train | validation} - {None, ""}
            leaked = test_values & seen
            if leaked:
                raise AssertionError(
                    f"fold {fold.name}: {attr} values {sorted(leaked)[:5]} are in the test fold and in train/validation"
                )


def verify_distinct_audio(folds: Sequence[Fold], utterances: dict[str, Utterance], manifest: Manifest) -> None:
    """Raise when one audio recording (same resolved file and segment) is in a test fold and in its train or
    validation set: a corpus copied into another, or a file listed by two manifests, would leak."""
    keys: dict[str, tuple[str, float | None, float | None] | None] = {}
    for uid, utt in utterances.items():
        path = manifest.audio_path(utt)
        keys[uid] = None if path is None else (os.path.realpath(path), utt.start, utt.end)
    for fold in folds:
        seen = {keys[i]: i for i in (*fold.train, *fold.validation) if keys[i] is not None}
        for uid in fold.test:
            key = keys[uid]
            if key is not None and key in seen:
                raise ManifestError(
                    f"fold {fold.name}: the audio file {key[0]} is test row {uid!r} and training/validation row "
                    f"{seen[key]!r}; one recording in two roles leaks. Remove the duplicate row from one of the "
                    "joined manifests and join again"
                )


def _refuse_unknown_labels(manifest: Manifest, dropped: Counter[str]) -> None:
    """Rows dropped because the corpus has no such label at all (a typo, not a class the label set leaves
    out) are an error, as in ``ser manifest validate``: silently training without them would be wrong.
    In a joined manifest the dropped keys are ``corpus:label`` and each is checked against its corpus."""

    unknown: dict[str, int] = {}
    known_by: dict[str, tuple[str, ...]] = {}
    for key, n in dropped.items():
        corpus_name, sep, label = key.partition(":")
        if not sep or manifest.header.roots is None:
            corpus_name, label = manifest.header.corpus, key
        corpus = CORPORA.get(corpus_name)
        known = corpus.raw_labels if corpus else None
        if known and label != "<none>" and label not in known:
            unknown[key] = n
            known_by[corpus_name] = known
    if unknown:
        listed = ", ".join(f"{label!r} x{n}" for label, n in sorted(unknown.items()))
        labels = "; ".join(f"{c}: {', '.join(k)}" for c, k in sorted(known_by.items()))
        raise ManifestError(
            f"{manifest.path}: {sum(unknown.values())} rows have labels {manifest.header.corpus} does "
            f"not have ({listed}); correct them (`ser manifest validate {manifest.path}` lists the "
            f"rows). Its labels: {labels}"
        )


def make_folds(
    manifest: Manifest,
    protocol: str,
    *,
    label_set: LabelSet | None = None,
    rule: ValidationRule | None = None,
    options: dict[str, Any] | None = None,
) -> FoldSet:
    """Apply a protocol preset to a manifest (after filtering it to ``label_set``).

    ``options``: ``k`` for speaker-kfold, ``test_split`` for official.
    """
    preset = protocol_preset(protocol)
    rule = rule or ValidationRule()
    options = protocol_options(protocol, options)
    utterances = list(manifest.utterances)
    dropped: Counter[str] = Counter()
    if preset.cross_corpus and label_set is None:
        raise ManifestError(
            f"protocol {protocol!r} needs a label set that harmonises the corpora' labels: pass --label-set "
            "shared (the classes every corpus has) or cross4 (ang, hap, neu, sad)"
        )
    if preset.cross_corpus:
        _by_corpus(utterances, protocol)  # refuse a manifest that is not joined before any row is dropped
    if label_set is not None and label_set.per_corpus is not None and not any(corpus_of(u) for u in utterances):
        raise ManifestError(
            f"label set {label_set.name!r} maps labels per corpus, but {manifest.path or 'the manifest'} is not a "
            "joined manifest (no row has extra.corpus); join the corpora first (`ser manifest join A.jsonl "
            "B.jsonl -o joined.jsonl`) or use the corpus' own label set"
        )
    if label_set is not None:
        filtered = apply_label_set(utterances, label_set)
        utterances, dropped = filtered.kept, filtered.dropped
        _refuse_unknown_labels(manifest, dropped)
    if not utterances:
        raise ManifestError(
            f"{manifest.path}: no utterances left to split"
            + (f" after applying label set {label_set.name}" if label_set else "")
        )
    folds, notes = preset.function(utterances, rule, label_set, options, protocol)
    by_id = {u.id: u for u in utterances}
    script_fields = ("script",) if protocol == "iemocap-loso-script" else ()
    speaker_independent = preset.speaker_independent
    cells: dict[str, dict[str, Any]] = {}
    if preset.cross_corpus:
        verify_distinct_audio(folds, by_id, manifest)
        for fold in folds:
            trained = sorted({str(corpus_of(by_id[i])) for i in (*fold.train, *fold.validation)})
            (tested,) = {str(corpus_of(by_id[i])) for i in fold.test}
            cells[fold.name] = {"train": trained, "test": tested}
    if speaker_independent:
        verify_folds(folds, by_id, disjoint_fields=("speaker", *script_fields))
    else:
        verify_folds(folds, by_id)
        overlap = _speaker_overlap(folds, by_id)
        speaker_independent = not overlap
        if overlap:
            notes.append(
                f"speakers shared between test and train/validation: {overlap} "
                "(the official split is speaker-dependent)"
            )
    card = ProtocolCard(
        protocol=protocol,
        corpus=manifest.header.corpus,
        label_set=label_set.name if label_set else None,
        classes=list(label_set.classes) if label_set else None,
        folds=[f.name for f in folds],
        validation=(
            f"official split where present, else {rule.by}-held-out {rule.fraction:.0%}"
            if protocol == "official"
            else f"{rule.by}-held-out {rule.fraction:.0%} of training rows"
        ),
        seed=rule.seed,
        speaker_independent=speaker_independent,
        n_utterances=len(utterances),
        notes=notes,
        cells=cells,
    )
    return FoldSet(card=card, folds=folds, utterances=by_id, dropped_labels=dropped)


def save_folds(fold_set: FoldSet, path: str | os.PathLike[str]) -> None:
    """Write the card and every fold's id lists to ``path`` as JSON (atomic: temp file, then rename)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ManifestError(
            f"cannot write the folds to {path}: the folder {path.parent} does not exist; create "
            "it or choose another path"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(fold_set.to_json(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ManifestError(
            f"cannot write the folds to {path} ({err.strerror or err}); choose a writable path"
        ) from err


def _speaker_overlap(folds: Sequence[Fold], by_id: dict[str, Utterance]) -> int:
    """How many speakers are in a test fold and in its train or validation set (rows without a speaker
    are no shared speaker)."""
    overlap: set[str] = set()
    for fold in folds:
        test = _speakers(by_id[i] for i in fold.test)
        rest = _speakers(by_id[i] for i in (*fold.train, *fold.validation))
        overlap |= test & rest
    return len(overlap)
