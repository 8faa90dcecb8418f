"""Which utterances adapted an upstream: the record a fine-tuned checkpoint carries into the caches
extracted with it, and the check that keeps a fold's test utterances out of it.

``ser finetune`` writes ``ser_finetune.json`` next to the checkpoint, listing the fold, the
protocol and every utterance id (and speaker) that trained or validated the adaptation. ``ser
extract --checkpoint`` copies a compact [`AdaptationRecord`][ser.cache.adaptation.AdaptationRecord] into the store's
``upstream`` attributes (the id lists stay in the checkpoint's file, verified by hash, because stores of large
corpora cannot hold them as attributes). ``ser fit`` then refuses to test a fold on a cache whose
upstream saw any of that fold's test utterances or, for speaker-independent protocols, speakers, and
early-stops on validation utterances that trained it.

The side file can be lost (a copy of the weights alone, a re-save through ``save_pretrained``, a hub
round-trip), so the adaptation is also tied to the weights themselves: ``ser finetune`` registers each
checkpoint's provenance under the digest of its tensors (``tensors_sha256``: names, dtypes, shapes and
bytes, which a copy or re-save keeps) in a per-user registry ([`registry_dir`][ser.cache.adaptation.registry_dir])
and embeds it in the weights file's safetensors metadata. [`find_provenance`][ser.cache.adaptation.find_provenance]
looks in the side file, then the metadata, then the registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROVENANCE_NAME = "ser_finetune.json"

METADATA_KEY = "ser_finetune"
"""Key of the provenance (as JSON) in the safetensors metadata of an adapted checkpoint's weights."""

REGISTRY_ENV = "SER_ADAPTATIONS"
"""Environment variable naming the adaptation registry folder
(see [`registry_dir`][ser.cache.adaptation.registry_dir])."""


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
    return _read_json(path)


def registry_dir() -> Path:
    """Where adapted checkpoints' provenance is registered by tensor digest: ``$SER_ADAPTATIONS``, else
    ``$SER_HOME/adaptations``, else ``$XDG_DATA_HOME/ser/adaptations`` (``~/.local/share/ser/adaptations``)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV]).expanduser()
    if os.environ.get("SER_HOME"):
        return Path(os.environ["SER_HOME"]).expanduser() / "adaptations"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "ser" / "adaptations"


def register(digest: str, provenance: dict[str, Any]) -> Path:
    """Record ``provenance`` under the tensor digest of the checkpoint it describes (written atomically);
    returns the registry file."""
    folder = registry_dir()
    path = folder / f"{digest}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as handle:
            json.dump({**provenance, "tensors_sha256": digest}, handle, indent=1, default=str)
        os.replace(handle.name, path)
    except OSError as err:
        raise AdaptationError(
            f"{path}: cannot register the adaptation ({err}); make the folder writable or point "
            f"{REGISTRY_ENV} at a writable one"
        ) from err
    return path


def registered(digest: str) -> tuple[dict[str, Any], Path] | None:
    """The provenance registered for the tensor digest ``digest`` and its file, or None."""
    path = registry_dir() / f"{digest}.json"
    if not path.is_file():
        return None
    return _read_json(path), path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AdaptationError(f"{path}: unreadable fine-tuning provenance ({err}); re-run ser finetune") from err
    if not isinstance(provenance, dict):
        raise AdaptationError(f"{path}: fine-tuning provenance is not a JSON object; re-run ser finetune")
    return provenance


def metadata_provenance(weights: Path) -> dict[str, Any] | None:
    """The provenance embedded in a safetensors file's metadata (``METADATA_KEY``), or None."""
    try:
        with open(weights, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        embedded = (header.get("__metadata__") or {}).get(METADATA_KEY)
    except (OSError, ValueError, struct.error, AttributeError) as err:
        raise AdaptationError(f"{weights}: unreadable safetensors header ({err}); is the file complete?") from err
    if embedded is None:
        return None
    try:
        provenance = json.loads(embedded)
    except ValueError as err:
        raise AdaptationError(f"{weights}: unreadable {METADATA_KEY} metadata ({err}); re-run ser finetune") from err
    return provenance if isinstance(provenance, dict) else None


def find_provenance(checkpoint: Path | None, digest: str | None) -> tuple[dict[str, Any], Path] | None:
    """An adapted checkpoint's provenance and the file holding its id lists: the folder's side file, else
    the provenance embedded in its safetensors weights (registered under ``digest`` so that its ids stay
    readable), else the registry entry of ``digest``; None for a checkpoint no ``ser finetune`` here made."""
    if checkpoint is not None and Path(checkpoint).is_dir():
        folder = Path(checkpoint)
        side = read_provenance(folder)
        if side is not None:
            return side, (folder / PROVENANCE_NAME).resolve()
        for weights in sorted(folder.glob("*.safetensors")):
            embedded = metadata_provenance(weights)
            if embedded is not None:
                if digest is None:
                    raise AdaptationError(f"{weights}: adapted weights without a tensor digest; re-extract")
                return embedded, register(digest, embedded)
    return registered(digest) if digest else None


def record_from_provenance(
    checkpoint: Path, provenance: dict[str, Any], *, provenance_file: Path | None = None
) -> AdaptationRecord:
    """The compact record of a checkpoint's provenance (what extraction stores); ``provenance_file``: where
    the id lists are kept (default: the checkpoint's side file)."""
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
        provenance_file=str(Path(provenance_file or Path(checkpoint) / PROVENANCE_NAME).resolve()),
        base_model=provenance.get("base_model", ""),
    )


def adapted_splits(record: AdaptationRecord) -> tuple[set[str], set[str]]:
    """(train ids, validation ids) of the adaptation, read from its provenance file and checked against
    the hash the cache recorded."""
    path = Path(record.provenance_file)
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
        train = list(provenance["trained_on"]["train_ids"])
        validation = list(provenance["trained_on"]["validation_ids"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AdaptationError(
            f"the cache was extracted with a fine-tuned upstream whose provenance {path} cannot be "
            f"read ({err}); keep the `ser finetune` checkpoint folder where it was, or re-extract"
        ) from err
    if ids_digest([*train, *validation]) != record.ids_sha256:
        raise AdaptationError(
            f"{path} no longer lists the utterances that adapted the upstream of this cache (hash "
            "mismatch); re-extract with the checkpoint it describes"
        )
    return set(train), set(validation)


def store_adaptation(upstream: dict[str, Any]) -> AdaptationRecord | None:
    """The adaptation behind a store's ``upstream`` attributes: the record extraction copied, else (a store
    extracted from weights whose side file was lost, or before they were registered) the registry entry of
    its ``tensors_sha256``; None for an upstream no ``ser finetune`` here adapted."""
    if upstream.get("adaptation"):
        return AdaptationRecord.from_dict(upstream["adaptation"])
    digest = upstream.get("tensors_sha256")
    found = registered(digest) if isinstance(digest, str) and digest else None
    if found is None:
        return None
    provenance, path = found
    try:
        return record_from_provenance(path.parent, provenance, provenance_file=path)
    except (KeyError, TypeError) as err:
        raise AdaptationError(f"{path} lacks {err}; re-run ser finetune for that fold") from err


def check_fold(
    record: AdaptationRecord,
    *,
    fold: str,
    test_ids: list[str],
    test_speakers: set[str],
    speaker_independent: bool,
    store: str,
    validation_ids: list[str] | None = None,
) -> None:
    """Refuse when the adaptation saw any test utterance of ``fold`` (or a test speaker, when the
    protocol promises speaker independence), or trained on any of the fold's ``validation_ids`` (the
    fit would select its model on utterances the features were fitted to)."""
    train, validation = adapted_splits(record)
    seen_speakers = sorted(test_speakers & set(record.speakers)) if speaker_independent else []
    seen_ids = sorted(set(test_ids) & (train | validation))
    if seen_speakers or seen_ids:
        what = (
            f"test speakers {', '.join(seen_speakers[:5])}"
            if seen_speakers
            else f"{len(seen_ids)} test utterances (e.g. {', '.join(seen_ids[:3])})"
        )
        raise AdaptationError(
            f"fold {fold}: {store} was extracted with an upstream {record.mode}-adapted for fold {record.fold} of "
            f"{record.protocol}, which trained on {what} of fold {fold}; testing on it would leak. Use one cache "
            f"per fold (`ser finetune --fold all --extract`, then a STORE path with {{fold}} in it), or an "
            "unadapted cache"
        )
    trained_validation = sorted(set(validation_ids or ()) & train)
    if trained_validation:
        raise AdaptationError(
            f"fold {fold}: {len(trained_validation)} of the fit's {len(set(validation_ids or ()))} validation "
            f"utterances (e.g. {', '.join(trained_validation[:3])}) trained the upstream of {store} "
            f"({record.mode}-adapted for fold {record.fold}); early stopping on them would select on fitted data. "
            "Carve validation as `ser finetune` did (same val_fraction, val_by and split_seed), or fit through "
            "`ser finetune --fit-config`"
        )
