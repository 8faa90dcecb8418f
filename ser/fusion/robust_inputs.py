"""Checks that a noise-robustness fit measures what it reports, and the protocol card's copy counts.

A robustness store (``ser fit --robustness STORE``, written by ``ser extract --corrupt``) replaces the
audio input of each fold's test rows. Its numbers mean "the same model, the same features, noisier
audio" only when:

* the corrupted store was extracted by the same upstream as the fold's clean store: the same model,
  revision and weights, adapted (``ser finetune``) on the same fold or not at all
  ([`check_robustness_store`][ser.fusion.robust_inputs.check_robustness_store] refuses otherwise, e.g. an
  unadapted robustness store beside per-fold adapted clean stores);
* its noise recordings are not those the training copies were mixed with (an augmentation policy's
  ``noise: {folder: ...}`` and ``--corrupt FOLDER@SNRdB`` reading the same folder, or one inside the
  other, are refused: the test noise would have been heard in training).

Stores record the resolved folders they mixed noise from (``noise_folders`` attribute); for stores
written before that record, the folders named in the extraction config are resolved from the current
folder.

The guide's robustness protocol trains on clean audio. A training store with noise-augmented copies
is still accepted (noise augmentation is a way to gain robustness) but the protocol card of a
robustness fit records the noise in its training copies (``training_noise``, see
[`training_noise`][ser.fusion.robust_inputs.training_noise]) and the log warns, so that the curve is not
read as that of a clean-trained model. Copies are never test rows in any case: they join their own
fold's training rows only ([`FusionData.fold_indices`][ser.fusion.data.FusionData.fold_indices]).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ser.cache.reader import CacheReader
from ser.fusion.data import DataError, FusionData
from ser.manifests.protocols import Fold

logger = logging.getLogger(__name__)

UPSTREAM_IDENTITY = ("model", "revision", "weights_sha256", "tensors_sha256")
"""Upstream attributes that name the encoder weights: a robustness store must match its clean store in each
that both record (a store from an older ser may lack one), and in the fold its upstream was adapted on."""


ADAPTED = "adapted on fold"


def _store_attrs(path: Path) -> dict[str, Any]:
    with CacheReader(path) as reader:
        return dict(reader.attrs)


def _noise_transforms(record: Any) -> Iterator[dict[str, Any]]:
    """Every ``{"kind": "noise", "params": ...}`` mapping inside a stored policy or corruption record."""
    if isinstance(record, dict):
        if record.get("kind") == "noise" and isinstance(record.get("params"), dict):
            yield record
        for value in record.values():
            yield from _noise_transforms(value)
    elif isinstance(record, list | tuple):
        for value in record:
            yield from _noise_transforms(value)


def store_noise_folders(attrs: dict[str, Any]) -> list[Path]:
    """The folders of noise recordings a store's audio was mixed with: its ``noise_folders`` record, else
    (older stores) the folders its extraction config names, resolved from the current folder."""
    recorded = attrs.get("noise_folders")
    if recorded is not None:
        return [Path(folder) for folder in recorded]
    config = (attrs.get("extractor") or {}).get("config") or {}
    named = {t["params"]["folder"] for t in _noise_transforms([config.get("augment"), config.get("corrupt")])}
    return sorted(Path(str(folder)).resolve() for folder in named if folder)


def _shared(a: Path, b: Path) -> bool:
    """The same folder, or one inside the other (its files are read by both)."""
    return a == b or a in b.parents or b in a.parents


def _identity(upstream: dict[str, Any]) -> dict[str, Any]:
    adaptation = upstream.get("adaptation") or {}
    return {**{key: upstream.get(key) for key in UPSTREAM_IDENTITY}, ADAPTED: adaptation.get("fold")}


def check_robustness_store(clean: FusionData, variant: FusionData, fold: Fold) -> None:
    """Refuse a fold's robustness store (``variant``'s audio) whose upstream differs from the fold's clean
    audio store, or whose noise recordings the fold's training audio was mixed with."""
    clean_audio, noisy_audio = clean.modalities["audio"], variant.modalities["audio"]
    clean_store, noisy_store = clean_audio.view.store, noisy_audio.view.store
    expected = _identity(clean_audio.records.get("upstream") or {})
    found = _identity(noisy_audio.records.get("upstream") or {})
    differ = [
        key
        for key in expected
        if expected[key] != found[key] and (key == ADAPTED or (expected[key] is not None and found[key] is not None))
    ]
    if differ:
        key = differ[0]
        raise DataError(
            f"fold {fold.name}: robustness store {noisy_store} was extracted by another upstream than the clean "
            f"store {clean_store} ({key} {found[key]!r}, not {expected[key]!r}); extract the corrupted copy with "
            "the clean store's model (per-fold adapted stores: a {{fold}} path in --robustness too)"
        )
    test_noise = store_noise_folders(_store_attrs(noisy_store))
    copies_used = len(clean.copies_of(fold.train)) > 0
    for store in sorted({modality.view.store for modality in clean.modalities.values()}):
        attrs = _store_attrs(store)
        if not copies_used and not attrs.get("corruption"):
            continue  # its noise reaches training only through copies (or a corrupted training store)
        for trained in store_noise_folders(attrs):
            for tested in test_noise:
                if _shared(trained, tested):
                    raise DataError(
                        f"fold {fold.name}: the training audio of {store} and the robustness store {noisy_store} "
                        f"both mix in noise recordings from {tested}"
                        f"{'' if tested == trained else f' (the policy reads {trained})'}: "
                        "training and test would share noise recordings; split the noise corpus (e.g. MUSAN "
                        "noise) into disjoint folders, one for the augmentation policy and one for --corrupt"
                    )


def _describe(transform: dict[str, Any]) -> str:
    params = transform["params"]
    source = params.get("color") or Path(str(params.get("folder"))).name
    return f"{source} noise"


def training_noise(fold_data: dict[str, FusionData], folds: Sequence[Fold]) -> list[str]:
    """The kinds of noise mixed into the training copies the folds use (``["pink noise"]``; empty for
    clean training), warned about: the robustness protocol trains on clean audio."""
    found: set[str] = set()
    for fold in folds:
        data = fold_data[fold.name]
        if not len(data.copies_of(fold.train)):
            continue
        for modality in data.modalities.values():
            augmentation = _store_attrs(modality.view.store).get("augmentation")
            found.update(_describe(t) for t in _noise_transforms(augmentation))
    if found:
        logger.warning(
            "robustness: the training copies are noise-augmented (%s), so the model was not trained on clean "
            "audio as the robustness protocol assumes; pass --set augmented=false for the clean-trained curve",
            ", ".join(sorted(found)),
        )
    return sorted(found)


def training_copies(fold_data: dict[str, FusionData], folds: Sequence[Fold]) -> dict[str, int]:
    """Fold -> the augmented copies its training set used (copies of that fold's training rows only,
    not every copy in the store)."""
    return {fold.name: len(fold_data[fold.name].copies_of(fold.train)) for fold in folds}
