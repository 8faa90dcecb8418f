"""Deep checks of a finished store: coverage of a manifest, finite values, consistent offsets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser.cache.reader import CacheReader, changed_rows_message

BLOCK_ROWS = 4096
BLOCK_FRAMES = 1 << 18


@dataclass
class VerifyReport:
    """What [`verify_store`][ser.cache.verify.verify_store] checked and found."""

    path: Path
    """The store checked."""
    n_items: int
    """Rows stored."""
    n_rejected: int
    """Rows rejected at extraction (recorded with their reasons)."""
    problems: list[str] = field(default_factory=list)
    """What is wrong, one line each (empty: the store is sound)."""
    checked: list[str] = field(default_factory=list)
    """What was checked, one line each."""
    notes: list[str] = field(default_factory=list)
    """Worth knowing, not a problem (e.g. the manifest was edited since extraction)."""

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def verify_store(
    path: str | os.PathLike[str],
    expected: Mapping[str, str] | None = None,
    *,
    manifest_sha256: str | None = None,
    manifest_name: str = "the manifest",
) -> VerifyReport:
    """Check every value of a store. ``expected`` (id -> manifest-row fingerprint) adds coverage
    checks: each id stored or rejected, fingerprints unchanged, no stored id outside the manifest.

    ``manifest_sha256`` (of the file ``expected`` was read from) is compared with the hash recorded
    at extraction; a difference is a note, not a problem, because only the rows' fingerprints
    decide whether the features still fit (labels and splits may change without re-extraction).
    """
    with CacheReader(path) as reader:
        report = VerifyReport(path=Path(path), n_items=len(reader), n_rejected=len(reader.rejected))
        store = reader._file()
        offsets = reader.offsets
        if offsets.shape != (len(reader) + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            report.problems.append("seq/offsets is not a monotone (N+1,) array starting at 0")
        report.checked.append("offsets monotone")
        for layer in reader.layout.seq:
            n_frames = store.shape(f"seq/{layer}")[0]
            if n_frames != offsets[-1]:
                report.problems.append(f"seq/{layer} has {n_frames} frames, offsets end at {offsets[-1]}")
            for start in range(0, n_frames, BLOCK_FRAMES):
                block = store.read(f"seq/{layer}", slice(start, min(n_frames, start + BLOCK_FRAMES)))
                if not np.isfinite(block).all():
                    bad_frame = start + int(np.argwhere(~np.isfinite(block))[0][0])
                    row = int(np.searchsorted(offsets, bad_frame, side="right") - 1)
                    report.problems.append(f"seq/{layer}: NaN/Inf in utterance {reader.ids[row]!r}")
                    break
        for stat in reader.layout.pooled:
            shape = store.shape(f"pooled/{stat}")
            if shape[0] != len(reader):
                report.problems.append(f"pooled/{stat} has {shape[0]} rows for {len(reader)} ids")
            for start in range(0, shape[0], BLOCK_ROWS):
                block = store.read(f"pooled/{stat}", slice(start, min(shape[0], start + BLOCK_ROWS)))
                bad = ~np.isfinite(block).reshape(len(block), -1).all(axis=1)
                if bad.any():
                    uid = reader.ids[start + int(np.argmax(bad))]
                    report.problems.append(f"pooled/{stat}: NaN/Inf in utterance {uid!r}")
                    break
        report.checked.append("all values finite")
        if reader.has_checksums:
            report.problems.extend(reader.damaged())
            report.checked.append("checksums of every dataset")
        else:
            report.notes.append(
                "the store records no checksums (written by an older ser): changed values cannot be "
                "detected; re-extract it to get them"
            )
        if len(set(reader.ids)) != len(reader.ids):
            report.problems.append("duplicate ids in the store")
        if manifest_sha256 is not None:
            note = reader.manifest_note(manifest_sha256, manifest_name)
            if note is None:
                report.checked.append("manifest sha256 as at extraction")
            else:
                report.notes.append(note)
        if expected is not None:
            _check_coverage(reader, expected, report)
    return report


def _check_coverage(reader: CacheReader, expected: Mapping[str, str], report: VerifyReport) -> None:
    missing = [uid for uid in expected if uid not in reader.index and uid not in reader.rejected]
    if missing:
        report.problems.append(f"{len(missing)} manifest ids are neither stored nor rejected, e.g. {missing[:5]}")
    # augmented copies (<id>@aug<k>) belong to their source row and were computed from its audio
    copies = {uid: expected[source] for uid, source in reader.links.items() if source in expected}
    if copies:
        expected = {**expected, **copies}
        report.checked.append(f"{len(copies)} augmented copies of manifest rows")
    changed = reader.changed_rows(expected)
    if changed:
        report.problems.append(changed_rows_message(reader.path, changed))
    extra = [uid for uid in reader.ids if uid not in expected]
    if extra:
        report.problems.append(f"{len(extra)} stored ids are not in the manifest, e.g. {extra[:5]}")
    report.checked.append("manifest coverage and fingerprints")
