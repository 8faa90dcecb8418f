"""Manifest validation: find every problem at once and name the rows and the fix.

Errors make a manifest unusable (duplicate ids, ids with invisible characters, missing audio, labels outside
the label set, unreadable transcripts, impossible segments, an empty manifest, speakers that leak between
protocol groups). Warnings are worth knowing but do not block (rows without audio or labels).
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ser.manifests.audio_info import AudioInfoError, probe_duration, wav_damage
from ser.manifests.corpora import CORPORA
from ser.manifests.labels import LabelSet, corpus_of
from ser.manifests.protocols import make_folds
from ser.manifests.schema import ID_FIX, RESERVED_ID_MARK, Manifest, ManifestError, Utterance, id_problem

MAX_LISTED = 5


@dataclass
class Problem:
    """One kind of problem, the rows it affects, and how to fix it."""

    kind: str
    """What is wrong, in a few words."""
    fix: str
    """What to do about it."""
    rows: list[str] = field(default_factory=list)
    """``file:line id`` of every affected row."""

    def describe(self) -> str:
        shown = "; ".join(self.rows[:MAX_LISTED])
        more = f" (and {len(self.rows) - MAX_LISTED} more)" if len(self.rows) > MAX_LISTED else ""
        return f"{self.kind}: {len(self.rows)} rows: {shown}{more}. Fix: {self.fix}"


@dataclass
class ValidationReport:
    """The outcome of [`validate_manifest`][ser.manifests.validation.validate_manifest]."""

    n_rows: int
    """Rows read."""
    errors: list[Problem] = field(default_factory=list)
    """Problems that make the manifest unusable."""
    warnings: list[Problem] = field(default_factory=list)
    """Problems worth a look that do not stop its use."""
    label_counts: Counter[str] = field(default_factory=Counter)
    """Class (raw label without a label set) -> rows."""

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors


def _bad_text(text: object) -> str | None:
    """Why a transcript is unusable, or None when it is fine."""
    if not isinstance(text, str):
        return f"text is a {type(text).__name__}, not a string"
    if "\ufffd" in text:
        return "text contains U+FFFD (it was decoded with the wrong encoding)"
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n" for ch in text):
        return "text contains control characters"
    return None


SEGMENT_TOLERANCE = 0.1
"""Seconds a segment's end may pass the end of its file (rounding in corpus annotations)."""


def _audio_problem(
    path: os.PathLike[str] | str, start: float | None, end: float | None
) -> tuple[str | None, str | None]:
    """``(kind, detail)`` of what is wrong with an existing audio file for a row, or ``(None, None)``:
    an empty file, a damaged (truncated) WAV file, a file no audio reader understands, a segment (partly)
    beyond the file's end."""
    if os.path.getsize(path) == 0:
        return "empty audio file", "0 bytes"
    damage = wav_damage(path)
    if damage is not None:
        return "damaged audio", damage
    try:
        total = probe_duration(Path(path))
    except AudioInfoError as err:
        return "unreadable audio", str(err)
    if start is not None and start >= total:
        return "segment past the end of the audio", f"start {start} s, the file lasts {total:.2f} s"
    if end is not None and end > total + SEGMENT_TOLERANCE:
        return "segment past the end of the audio", f"end {end} s, the file lasts {total:.2f} s"
    return None, None


def _segment_ok(start: float | None, end: float | None) -> bool:
    return not ((start is not None and start < 0) or (end is not None and end <= (start or 0.0)))


def validate_manifest(
    manifest: Manifest,
    *,
    label_set: LabelSet | None = None,
    drop_unknown: bool = False,
    check_audio: bool = True,
    protocol: str | None = None,
    default_label_set: bool = False,
) -> ValidationReport:
    """Check a manifest; with ``label_set`` also check labels, with ``protocol`` the grouping.

    ``drop_unknown`` turns labels outside the label set into a warning (they will be dropped).
    ``default_label_set`` says that nobody asked for ``label_set`` (it is the corpus default): then
    a raw label the corpus has but the set does not use (IEMOCAP ``fru`` under ``iemocap4``) is only
    a warning, while a label the corpus does not have at all (a typo) stays an error.
    """

    corpus = CORPORA.get(manifest.header.corpus)
    raw_labels = (corpus.raw_labels or ()) if corpus else ()
    if manifest.header.roots:  # a joined manifest: each row is checked against its own corpus' labels
        joined = {c: CORPORA[c].raw_labels or () for c in sorted(manifest.header.roots) if c in CORPORA}
        raw_labels = tuple(f"{c}:{label}" for c, labels in joined.items() for label in labels)

    def known_labels(utt: Utterance) -> set[str]:
        """The raw labels of the row's corpus, when the label set is the default one (else none)."""
        if not default_label_set:
            return set()
        info = CORPORA.get(corpus_of(utt) or manifest.header.corpus)
        return set(info.raw_labels or ()) if info else set()

    report = ValidationReport(n_rows=len(manifest))
    if not manifest.utterances:
        report.errors.append(
            Problem(
                "empty manifest",
                "rebuild it with `ser manifest CORPUS ROOT -o FILE` and check that ROOT is the corpus folder",
                [str(manifest.path)],
            )
        )
        return report

    first_seen: dict[str, str] = {}
    problems: dict[str, list[str]] = defaultdict(list)
    for index, utt in enumerate(manifest.utterances):
        unseen = id_problem(utt.id)
        where = f"{manifest.location(index)} {repr(utt.id) if unseen else utt.id}"
        if unseen:
            problems["invisible characters in id"].append(f"{where} ({unseen})")
        if utt.id in first_seen:
            problems["duplicate id"].append(f"{where} (first at {first_seen[utt.id]})")
        else:
            first_seen[utt.id] = manifest.location(index)
        if RESERVED_ID_MARK in utt.id:
            problems["reserved id"].append(where)
        if utt.audio is None:
            problems["no audio"].append(where)
        elif check_audio:
            path = manifest.audio_path(utt)
            if path is None or not os.path.isfile(path):
                problems["missing audio"].append(f"{where} -> {path}")
            else:
                kind, detail = _audio_problem(
                    path,
                    utt.start if _segment_ok(utt.start, utt.end) else None,
                    utt.end if _segment_ok(utt.start, utt.end) else None,
                )
                if kind:
                    problems[kind].append(f"{where} ({detail})")
        if utt.text is not None:
            reason = _bad_text(utt.text)
            if reason:
                problems["unreadable transcript"].append(f"{where} ({reason})")
        if not _segment_ok(utt.start, utt.end):
            problems["bad segment"].append(f"{where} (start {utt.start}, end {utt.end})")
        if utt.duration is not None and utt.duration <= 0:
            problems["non-positive duration"].append(f"{where} ({utt.duration})")
        if label_set is None:
            report.label_counts[utt.label or "<none>"] += 1
        else:
            cls = label_set.class_of(utt)
            raw = label_set.raw_label(utt)
            known = known_labels(utt)
            if cls is not None:
                report.label_counts[cls] += 1
            elif known and raw is None:
                problems["no label"].append(where)
            elif known and raw in known:
                problems["label outside the default label set"].append(f"{where} ({raw!r})")
            elif known:
                problems["label unknown to the corpus"].append(f"{where} ({raw!r})")
            else:
                problems["label outside label set"].append(f"{where} ({raw!r})")
        if utt.label is None and label_set is None:
            problems["no label"].append(where)

    fixes = {
        "duplicate id": ("error", "make ids unique (rebuild the manifest; two copies of a file?)"),
        "missing audio": (
            "error",
            f"check the manifest root ({manifest.root}) or the audio paths; "
            "rebuild with `ser manifest` if the corpus moved",
        ),
        "unreadable transcript": (
            "error",
            "re-decode the transcript with the right encoding (the corpus adapter does this) or remove the text field",
        ),
        "bad segment": ("error", "start must be >= 0 and end > start"),
        "reserved id": ("error", "rename these rows: '<id>@aug<k>' names augmented copies in cache stores"),
        "invisible characters in id": ("error", ID_FIX),
        "segment past the end of the audio": (
            "error",
            "fix start/end (seconds from the file's start) or the audio path",
        ),
        "empty audio file": ("error", "the file holds nothing: copy it again from the corpus, or remove the row"),
        "unreadable audio": (
            "error",
            "the file is not audio any reader here understands (a truncated copy, or "
            "not an audio file): copy it again, convert it, or remove the row",
        ),
        "damaged audio": (
            "error",
            "the file holds fewer samples than its header states (a truncated copy or a corrupt header): "
            "copy it again from the corpus, or remove the row",
        ),
        "non-positive duration": ("error", "the audio is empty; remove the row or the file"),
        "label outside label set": (
            "warning" if drop_unknown else "error",
            f"these rows are dropped when the label set {label_set.name if label_set else ''} is used"
            if drop_unknown
            else "pass --drop-unknown to drop them, or choose a label set that covers them",
        ),
        "label outside the default label set": (
            "warning",
            f"these rows are dropped when {label_set.name if label_set else ''} is used; pass "
            "--label-set to validate (and train) with a set that keeps them",
        ),
        "label unknown to the corpus": (
            "warning" if drop_unknown else "error",
            f"{manifest.header.corpus} has no such label (its labels: "
            f"{', '.join(raw_labels)}); correct the label, or pass --label-set "
            "NAME (or --all-labels) if the manifest is meant to hold other labels",
        ),
        "no audio": ("warning", "audio-based extractors will skip these rows; text extractors can still use them"),
        "no label": ("warning", "unlabelled rows can be extracted but not used for training or testing"),
    }
    for kind, rows in problems.items():
        severity, fix = fixes[kind]
        (report.errors if severity == "error" else report.warnings).append(Problem(kind, fix, rows))

    if protocol is not None and not report.errors:
        try:
            make_folds(manifest, protocol, label_set=label_set)
        except ManifestError as err:
            report.errors.append(Problem(f"protocol {protocol}", "see the message", [str(err)]))
    return report
