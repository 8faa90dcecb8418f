"""Turn a raw corpus folder into a manifest file: scan, check ids, add durations, filter labels."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser.manifests.audio_info import AudioInfoError, probe_duration
from ser.manifests.corpora import get_adapter
from ser.manifests.corpora.base import CorpusScan
from ser.manifests.labels import LabelSet, apply_label_set
from ser.manifests.schema import ID_FIX, ManifestError, ManifestHeader, Utterance, id_problem, write_manifest

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a manifest build found, kept and dropped."""

    corpus: str
    """The corpus adapter used."""
    output: Path
    """The manifest file written."""
    written: int
    """Rows written."""
    scanned: int
    """Rows the adapter found."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Reason -> count of things the adapter skipped."""
    kept: Counter[str] = field(default_factory=Counter)
    """Rows written although something is missing (reason -> count), e.g. MELD rows without a clip."""
    dropped_labels: Counter[str] = field(default_factory=Counter)
    """Raw label -> rows dropped because the label set does not map it."""
    unreadable_audio: list[str] = field(default_factory=list)
    """Audio files whose header could not be read (their rows have no duration)."""
    notes: list[str] = field(default_factory=list)
    """Remarks for the summary."""

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        out = [f"{self.corpus}: {self.scanned} utterances found, {self.written} written to {self.output}"]
        out += [f"  skipped {count}: {reason}" for reason, count in sorted(self.skipped.items())]
        out += [f"  kept {count}: {reason}" for reason, count in sorted(self.kept.items())]
        if self.dropped_labels:
            parts = ", ".join(f"{label} {n}" for label, n in sorted(self.dropped_labels.items()))
            out.append(f"  dropped by label set: {sum(self.dropped_labels.values())} ({parts})")
        if self.unreadable_audio:
            out.append(
                f"  audio headers unreadable (duration left empty): {len(self.unreadable_audio)}, "
                f"e.g. {self.unreadable_audio[0]}"
            )
        out += [f"  note: {note}" for note in self.notes]
        return out


def duplicate_ids(utterances: list[Utterance]) -> dict[str, int]:
    """Ids that occur more than once, with their counts."""
    counts = Counter(u.id for u in utterances)
    return {uid: n for uid, n in counts.items() if n > 1}


def fill_durations(utterances: list[Utterance], root: Path) -> list[str]:
    """Set ``duration`` from start/end or the audio header where it is missing.

    Returns the messages of files whose header could not be read (their duration stays None).
    """
    failures: list[str] = []
    for utt in utterances:
        if utt.duration is not None or utt.audio is None:
            continue
        if utt.start is not None and utt.end is not None:
            utt.duration = round(utt.end - utt.start, 6)
            continue
        path = Path(utt.audio) if os.path.isabs(utt.audio) else root / utt.audio
        try:
            total = probe_duration(path)
        except AudioInfoError as err:
            failures.append(str(err))
            continue
        utt.duration = round(total - (utt.start or 0.0), 6)
    return failures


def build_manifest(
    corpus: str,
    root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    label_set: LabelSet | None = None,
    durations: bool = True,
    options: dict[str, Any] | None = None,
) -> BuildReport:
    """Scan ``root`` with the ``corpus`` adapter and write the manifest to ``output``.

    Raises [`ManifestError`][ser.manifests.schema.ManifestError] when the corpus yields no utterance, duplicated ids
    or ids [`id_problem`][ser.manifests.schema.id_problem] refuses (nothing is written then).
    """
    root_path = Path(root).expanduser().resolve()
    scan: CorpusScan = get_adapter(corpus)(root_path, **(options or {}))
    utterances = scan.utterances
    if not utterances:
        raise ManifestError(
            f"{root_path}: the {corpus} adapter found no utterances "
            f"(skipped: {dict(scan.skipped) or 'nothing'}); check that ROOT is the corpus folder"
        )
    dupes = duplicate_ids(utterances)
    if dupes:
        shown = ", ".join(f"{uid} (x{n})" for uid, n in list(dupes.items())[:5])
        raise ManifestError(
            f"{root_path}: {len(dupes)} utterance ids occur more than once: {shown}; "
            "the corpus folder probably holds two copies of some files"
        )
    unseen = [f"{u.id!r} ({problem}, audio {u.audio})" for u in utterances if (problem := id_problem(u.id))]
    if unseen:
        raise ManifestError(
            f"{root_path}: {len(unseen)} utterance ids hold invisible characters: {'; '.join(unseen[:5])}"
            f"{' ...' if len(unseen) > 5 else ''}; {ID_FIX}"
        )
    failures = fill_durations(utterances, root_path) if durations else []
    dropped: Counter[str] = Counter()
    if label_set is not None:
        filtered = apply_label_set(utterances, label_set)
        utterances, dropped = filtered.kept, filtered.dropped
    header = ManifestHeader(corpus=corpus, root=str(root_path), label_set=label_set.name if label_set else None)
    written = write_manifest(output, header, utterances)
    return BuildReport(
        corpus=corpus,
        output=Path(output),
        written=written,
        scanned=len(scan.utterances),
        skipped=scan.skipped,
        kept=scan.kept,
        dropped_labels=dropped,
        unreadable_audio=failures,
        notes=scan.notes,
    )
