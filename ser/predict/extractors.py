"""Rebuild the extractor a run was trained on from its records, and refuse one that differs.

A run's ``models/index.json`` holds, per input, the store's ``extractor`` record (family, preset,
config, config hash) and ``upstream`` record (model id or path, resolved revision, layers, the
``ser finetune`` adaptation record). [`rebuild_extractor`][ser.predict.extractors.rebuild_extractor] builds the same
family and preset with the recorded options, then compares what it built with the record: any difference in the
config (model id, revision, options, a corruption the store was made with) or in the loaded
upstream (resolved revision, class, depth, width, adapted checkpoint, weight hashes) is refused,
naming each difference. Inference never guesses.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
from typing import Any

from ser.errors import UserError
from ser.extract.base import Extractor
from ser.extract.registry import build_extractor

logger = logging.getLogger(__name__)


class UpstreamMismatchError(UserError):
    """The extractor that would be loaded now differs from the one the run was trained on."""


IGNORED_CONFIG_KEYS = ("seq_layers", "augment")
"""Store config keys that do not change an original row's features: which layers were also kept as
sequences, and the augmentation policy (copies only; the original rows are not transformed)."""

UPSTREAM_KEYS = (
    "class",
    "model_class",
    "revision",
    "layers",
    "num_layers",
    "dim",
    "pooler",
    "adaptation",
    "weights_sha256",
    "pca_sha256",
    "feature_set",
    "opensmile",
)
"""Upstream attributes that must match when the record has them (what was actually loaded; a store
written before an attribute was recorded is not held to it)."""

_SSL = ("hubert", "wav2vec2", "wavlm")
_TEXT = ("bert", "roberta", "minilm")
_CONFIG_CLASSES = {"egemaps": "ser.extract.egemaps:EgemapsConfig", "logmel": "ser.extract.logmel:LogMelConfig"}


def build_arguments(record: dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
    """``(checkpoint, dtype, options)`` for [`build_extractor`][ser.extract.registry.build_extractor] from an input's
    records."""
    extractor, upstream = record["extractor"], record.get("upstream") or {}
    family, config = extractor["name"], extractor.get("config") or {}

    def pick(*names: str) -> dict[str, Any]:
        return {k: config[k] for k in names if config.get(k) is not None}

    dtype = str(config.get("dtype") or "float32")
    if family in _SSL:
        return config["model"], dtype, pick("max_seconds", "revision", "normalize")
    if family == "whisper":
        return config["model"], dtype, pick("revision")
    if family in _TEXT:  # a bundled model is recorded by its label and found again by the package
        # ``pooler_seed`` is recorded only for a RoBERTa checkpoint without pooler weights (its seeded pooler)
        options = pick("max_tokens", "revision", "pooler_seed")
        return (None if upstream.get("model_label") else config["model"]), dtype, options
    if family == "ecapa":  # the SpeechBrain folder or hub id the store read; its hash and settings are checked
        return config["model"], dtype, pick("revision")
    if family == "vggish":
        return upstream.get("weights"), dtype, {"pca_checkpoint": upstream["pca"]} if upstream.get("pca") else {}
    if family in _CONFIG_CLASSES:
        module, _, name = _CONFIG_CLASSES[family].partition(":")
        names = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))} - {"preset"}
        return None, dtype, pick(*sorted(names))
    raise UserError(
        f"this run reads {family} features, which ser predict cannot compute from audio or text "
        f"(it reads audio files and text only)"
    )


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def differences(recorded: dict[str, Any], rebuilt: dict[str, Any], keys: Any, *, where: str) -> list[str]:
    """``where.key: run had A, now B`` for every key in ``keys`` whose values differ (missing = None)."""
    out = []
    for key in keys:
        before, now = _plain(recorded.get(key)), _plain(rebuilt.get(key))
        if before != now:
            out.append(f"{where}.{key}: the run used {before!r}, now {now!r}")
    return out


def check_same_upstream(
    modality: str, record: dict[str, Any], extractor: Extractor, *, relocated: bool = False
) -> None:
    """Refuse ``extractor`` unless its config and loaded upstream match the run's record (see module doc).

    ``relocated`` (the user pointed ``--checkpoint`` at a copy of the model) leaves the model path out
    of the comparison; everything the model is (revision, depth, width, adaptation, hashes) still counts."""
    recorded_config = dict(record["extractor"].get("config") or {})
    rebuilt_config = dict(extractor.config())
    ignored = set(IGNORED_CONFIG_KEYS) | ({"model"} if relocated else set())
    keys = sorted((set(recorded_config) | set(rebuilt_config)) - ignored)
    problems = differences(recorded_config, rebuilt_config, keys, where="config")
    recorded_upstream = record.get("upstream") or {}
    rebuilt_upstream = extractor.upstream()
    problems += differences(
        recorded_upstream, rebuilt_upstream, [k for k in UPSTREAM_KEYS if k in recorded_upstream], where="upstream"
    )
    if problems:
        name = f"{record['extractor'].get('name')} {record['extractor'].get('preset')}"
        raise UpstreamMismatchError(
            f"--{modality}: the {name} extractor available now differs from the one the "
            f"run was trained on (store config hash {record['extractor'].get('config_hash')}): "
            + "; ".join(problems)
            + ". Use the same model and settings, or fit on "
            "features extracted with the new one"
        )


def rebuild_extractor(
    modality: str, record: dict[str, Any], *, device: str, checkpoint: str | None = None
) -> Extractor:
    """The run's extractor for ``modality``, checked against its record; ``checkpoint`` replaces the
    recorded model location (a copy of the same model elsewhere)."""
    if record.get("corruption"):
        raise UpstreamMismatchError(
            f"--{modality}: the run was trained on corrupted copies "
            f"({record['corruption']}); ser predict extracts clean features and cannot repeat that"
        )
    family, preset = record["extractor"]["name"], record["extractor"]["preset"]
    recorded_checkpoint, dtype, options = build_arguments(record)
    extractor = build_extractor(
        family, preset, checkpoint=checkpoint or recorded_checkpoint, device=device, dtype=dtype, **options
    )
    check_same_upstream(modality, record, extractor, relocated=checkpoint is not None)
    logger.info(
        "--%s: rebuilt %s %s (config hash %s)", modality, family, preset, record["extractor"].get("config_hash")
    )
    return extractor
