"""The identity of the store an extraction writes: its layout and provenance attributes (whose
extractor config hash says which features it holds), the row fingerprint scheme it keeps, and the
refusal to continue a store written with another config."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser.cache.format import StoreLayout, config_hash, partial_path
from ser.cache.provenance import environment, utc_now
from ser.cache.reader import CacheReader
from ser.extract.augment import describe_corruption, noise_folders
from ser.extract.base import Extractor, ExtractorError
from ser.extract.registry import recommended_view
from ser.extract.run_options import RunOptions
from ser.extract.update import store_attrs_of
from ser.manifests.fingerprints import SCHEME as FINGERPRINT_SCHEME
from ser.manifests.schema import Manifest, file_sha256


def store_attrs(
    extractor: Extractor,
    seq_layers: Sequence[str],
    manifest: Manifest,
    shard: tuple[int, int] | None,
    options: RunOptions | None = None,
) -> tuple[StoreLayout, dict[str, Any]]:
    """The layout and provenance attributes of the store an extraction writes."""
    spec = extractor.spec
    config = {**extractor.config(), "seq_layers": list(seq_layers)}
    waveform: dict[str, Any] = {}  # keys only when set, so plain stores keep their config hash
    if options is not None and options.augment is not None:
        waveform["augment"] = {**options.augment.to_dict(), "splits": list(options.augment_splits)}
    if options is not None and options.corrupt is not None:
        waveform["corrupt"] = {"kind": options.corrupt.kind, "params": options.corrupt.params}
    config.update(waveform)
    layout = StoreLayout(pooled=dict(spec.pooled), seq={layer: spec.seq_layers[layer] for layer in seq_layers})
    attrs = {
        "extractor": {
            "name": spec.name,
            "preset": spec.preset,
            "modality": spec.modality,
            "config": config,
            "config_hash": config_hash(config),
            "shard": list(shard) if shard else None,
            "recommended_view": recommended_view(spec.name, spec.pooled),
        },
        "upstream": extractor.upstream(),
        "manifest": {
            "path": str(manifest.path.resolve()) if manifest.path else None,
            "sha256": file_sha256(manifest.path) if manifest.path else None,
            "n_items": len(manifest),
            "corpus": manifest.header.corpus,
        },
        "environment": environment(),
        "created": utc_now(),
    }
    if options is not None and options.corrupt is not None:
        attrs["corruption"] = describe_corruption(options.corrupt)
    if "augment" in waveform:
        attrs["augmentation"] = waveform["augment"]
    if options is not None and (options.augment is not None or options.corrupt is not None):
        mixed = options.augment.transforms() if options.augment is not None else []
        mixed += [options.corrupt] if options.corrupt is not None else []
        attrs["noise_folders"] = noise_folders(mixed)  # training and test noise must not share recordings
    return layout, attrs


def fingerprint_scheme(out: Path, merged: Path, *, aside: Path) -> str | None:
    """The fingerprint scheme of the store this run continues (a partial, set-aside or finished store keeps
    the scheme it was started with, so an older store is not re-extracted for a new scheme); new stores
    get the current one."""
    partial_meta = partial_path(out) / "meta.json"
    if partial_meta.is_file():
        try:
            attrs = json.loads(partial_meta.read_text(encoding="utf-8")).get("attrs") or {}
        except (OSError, ValueError, AttributeError):
            return FINGERPRINT_SCHEME  # a damaged partial store is refused, naming the file, when it is opened
        return attrs.get("fingerprint_scheme")
    for existing in (aside, out, merged):
        if existing.exists():
            return store_attrs_of(existing).get("fingerprint_scheme")
    return FINGERPRINT_SCHEME


def check_same_config(out: Path, attrs: dict[str, Any]) -> None:
    """Refuse to continue the store at ``out`` when its extractor config hash is not that of ``attrs``."""

    with CacheReader(out) as reader:
        existing = reader.attrs.get("extractor", {}).get("config_hash")
    if existing != attrs["extractor"]["config_hash"]:
        raise ExtractorError(
            f"{out} already exists with another extractor config (hash {existing}, now "
            f"{attrs['extractor']['config_hash']}); write to another path or delete it"
        )
