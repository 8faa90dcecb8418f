"""Which utterances adapted an upstream: the record a fine-tuned checkpoint carries into the caches
extracted with it, and the check that keeps a fold's test utterances out of it.

``ser finetune`` writes ``ser_finetune.json`` next to the checkpoint, listing the fold, the
protocol and every utterance id (and speaker) that trained or validated the adaptation. ``ser
extract --checkpoint`` copies a compact [`AdaptationRecord`][ser.cache.adaptation.AdaptationRecord] into the store's
``upstream`` attributes (the id lists stay in the checkpoint's file, verified by hash, because stores of large
corpora cannot hold them as attributes). ``ser fit`` then refuses to test a fold on a cache whose
upstream saw any of that fold's test utterances or, for speaker-independent protocols, speakers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROVENANCE_NAME = "ser_finetune.json"


class AdaptationError(Exception):
    """An adapted cache whose adaptation cannot be verified or would leak test data into a fold.

    (The fusion layer re-raises it as a user error; this leaf package has no ser imports.)"""


def ids_digest(ids: list[str]) -> str:
    """sha256 of the sorted, newline-joined ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AdaptationRecord:
    """The compact form stored in cache attributes (``upstream.adaptation``)."""

    mode: str
    """``supervised`` or ``contrastive``."""
    fold: str
    """The protocol fold the upstream was adapted on."""
    protocol: str
    """The protocol preset that made the fold."""
    manifest_sha256: str
    """sha256 of the manifest file the fold was made from."""
    speakers: list[str]
    """Speakers of every utterance that trained or validated the adaptation."""
    n_ids: int
    """How many utterances trained or validated the adaptation."""
    ids_sha256: str
    """Digest of their sorted ids (``ids_digest``); the ids themselves are in ``provenance_file``."""
    provenance_file: str
    """Absolute path of the checkpoint's ser_finetune.json (holds the id lists)."""
    base_model: str = ""
    """The upstream the adaptation started from (hub id or folder)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further settings of the adaptation, as recorded."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> AdaptationRecord:
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        return cls(**known)


def read_provenance(checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint folder's ser_finetune.json, or None for an unadapted checkpoint."""
    path = Path(checkpoint) / PROVENANCE_NAME
    if not path.is_file():
        return None
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AdaptationError(f"{path}: unreadable fine-tuning provenance ({err}); re-run ser finetune") from err
    if not isinstance(provenance, dict):
        raise AdaptationError(f"{path}: fine-tuning provenance is not a JSON object; re-run ser finetune")
    return provenance


def record_from_provenance(checkpoint: Path, provenance: dict[str, Any]) -> AdaptationRecord:
    """The compact record of a checkpoint's provenance (what extraction stores)."""
    seen = provenance["trained_on"]
    ids = [*seen["train_ids"], *seen["validation_ids"]]
    return AdaptationRecord(
        mode=provenance["mode"],
        fold=provenance["fold"],
        protocol=provenance["protocol"],
        manifest_sha256=provenance["manifest"]["sha256"],
        speakers=sorted(seen["speakers"]),
        n_ids=len(ids),
        ids_sha256=ids_digest(ids),
        provenance_file=str((Path(checkpoint) / PROVENANCE_NAME).resolve()),
        base_model=provenance.get("base_model", ""),
    )


def adapted_ids(record: AdaptationRecord) -> set[str]:
    """Every id that trained or validated the adaptation, read from its provenance file and checked
    against the hash the cache recorded."""
    path = Path(record.provenance_file)
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
        ids = [*provenance["trained_on"]["train_ids"], *provenance["trained_on"]["validation_ids"]]
    except (OSError, ValueError, KeyError) as err:
        raise AdaptationError(
            f"the cache was extracted with a fine-tuned upstream whose provenance {path} cannot be "
            f"read ({err}); keep the `ser finetune` checkpoint folder where it was, or re-extract"
        ) from err
    if ids_digest(ids) != record.ids_sha256:
        raise AdaptationError(
            f"{path} no longer lists the utterances that adapted the upstream of this cache (hash "
            "mismatch); re-extract with the checkpoint it describes"
        )
    return set(ids)


def check_fold(
    record: AdaptationRecord,
    *,
    fold: str,
    test_ids: list[str],
    test_speakers: set[str],
    speaker_independent: bool,
    store: str,
) -> None:
    """Refuse when the adaptation saw any test utterance of ``fold`` (or a test speaker, when the
    protocol promises speaker independence)."""
    seen_speakers = sorted(test_speakers & set(record.speakers)) if speaker_independent else []
    seen_ids = sorted(set(test_ids) & adapted_ids(record))
    if not seen_speakers and not seen_ids:
        return
    what = (
        f"test speakers {', '.join(seen_speakers[:5])}"
        if seen_speakers
        else f"{len(seen_ids)} test utterances (e.g. {', '.join(seen_ids[:3])})"
    )
    raise AdaptationError(
        f"fold {fold}: {store} was extracted with an upstream {record.mode}-adapted for fold {record.fold} of "
        f"{record.protocol}, which trained on {what} of fold {fold}; testing on it would leak. Use one cache per "
        f"fold (`ser finetune --fold all --extract`, then a STORE path with {{fold}} in it), or an unadapted cache"
    )
