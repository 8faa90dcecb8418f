"""A whole fit: protocol folds x seeds, and the run directory with everything needed to judge it.

Run directory ``<out>/<fusion>-<protocol>-<label set>-<config hash>/``:

``config.yaml``       the resolved configuration (defaults < head preset < YAML < flags < --set; the
                      train section as trained, with loss options coerced), every field of the
                      head config (``head_resolved``), the head's training preset, the protocol
                      card, and per input its view and store provenance (path, extractor name /
                      preset / config hash, upstream model, manifest hash)
``metrics.json``      per fold and seed: validation and test UA / WA / macro-F1 / weighted-F1,
                      per-class scores, confusion, best epoch, learned layer weights; then
                      mean ± std over folds and seeds
``predictions.csv``   one line per test utterance, fold and seed, with class probabilities
``confusion.png``     confusion matrix summed over folds and seeds (row-normalised)
``train.log``         the log of the run

The same config and seeds give the same numbers (and the same directory name).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.adaptation import AdaptationError, AdaptationRecord, check_fold
from ser.errors import UserError
from ser.fusion.config import FOLD_PLACEHOLDER, FitConfig, TrainConfig, apply_overrides, coerce_like, config_from_dict
from ser.fusion.data import DataError, FusionData, View, load_fusion_data
from ser.fusion.heads import head_module, resolve_head_config
from ser.fusion.losses import loss_options
from ser.fusion.metrics import aggregate
from ser.fusion.plots import plot_confusion
from ser.fusion.presets import train_preset
from ser.fusion.train import FoldResult, deterministic_cuda_setup, train_fold
from ser.manifests.corpora import DEFAULT_LABEL_SETS
from ser.manifests.labels import LabelSet, load_label_set
from ser.manifests.protocols import Fold, FoldSet, ValidationRule, make_folds
from ser.manifests.schema import Utterance, read_manifest

logger = logging.getLogger(__name__)

__all__ = ["FitConfig", "TrainConfig", "apply_overrides", "config_from_dict", "run_fit"]


_SEQ_HINTS = {"mocap": "pass --mocap STORE:seq (the motion-capture grid; extract it with --seq grid)"}


def _check_inputs(fusion: str, views: dict[str, View]) -> None:
    """The head's declared INPUTS against what was given (clear message on a mismatch)."""
    needs: dict[str, str] = head_module(fusion).INPUTS
    for modality, kind in needs.items():
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if modality not in views:
            if not optional:
                raise UserError(f"head {fusion} needs --{modality} ({kind} features)")
            continue
        if views[modality].kind != kind:
            if kind == "seq":
                hint = _SEQ_HINTS.get(modality, f"pass --{modality} STORE:seq=LAYER (extract with --seq LAYER)")
            else:
                hint = f"pass --{modality} STORE (pooled) or STORE:stat=..,layer=.."
            raise UserError(f"head {fusion} takes {kind} {modality} features, got {views[modality].describe()}; "
                            f"{hint}")
    extra = sorted(set(views) - set(needs))
    if extra:
        raise UserError(f"head {fusion} does not use {', '.join('--' + m for m in extra)}")


@dataclass
class _Plan:
    """A checked fit, ready to train: nothing in it has written a file yet."""

    cfg: FitConfig
    head_options: dict[str, Any]
    """``cfg.head`` with numbers coerced by the head config's field types (what ``build`` gets)."""
    head_resolved: dict[str, Any]
    """Every field of the head config (paper defaults + overrides)."""
    train: TrainConfig
    """``cfg.train`` with ``loss_options`` coerced."""
    label_name: str
    fold_data: dict[str, FusionData]
    """Fold name -> its data (one shared object unless store paths hold ``{fold}``)."""
    folds: list[Fold]
    card: dict[str, Any]
    robust: dict[str, dict[str, FusionData]] = field(default_factory=dict)
    """Fold name -> robustness store key -> the fold's data with audio read from that corrupted copy."""
    robust_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Robustness store key -> {"store": as configured, "corruption": from the store's attributes}."""

    @property
    def data(self) -> FusionData:
        """The first fold's data (classes and inputs are the same for every fold)."""
        return self.fold_data[self.folds[0].name]


def _prepare(cfg: FitConfig) -> _Plan:
    """Validate everything a fit needs and load its data, before any run directory exists: a fit that
    cannot start (unknown head, wrong inputs or options, bad protocol, missing store) leaves nothing."""
    views = cfg.views()
    _check_inputs(cfg.fusion, views)
    head_options, head_resolved = resolve_head_config(cfg.fusion, cfg.head)
    cfg.train.check()
    if cfg.train.specaugment and head_resolved.get("specaugment"):
        raise UserError(f"head {cfg.fusion} applies its own SpecAugment (head.specaugment); set "
                        "head.specaugment=false to use train.specaugment instead, or keep only the head's")
    try:
        accepted = loss_options(cfg.train.loss)
    except KeyError as err:
        raise UserError(f"train.loss: {err.args[0]}") from None
    unknown = sorted(set(cfg.train.loss_options) - set(accepted))
    if unknown:
        raise UserError(f"train.loss_options {unknown} are not options of loss {cfg.train.loss!r}; it takes "
                        f"{', '.join(accepted) or 'none'}")
    train = replace(cfg.train, loss_options=coerce_like(cfg.train.loss_options, accepted, "train.loss_options"))
    manifest = read_manifest(cfg.manifest)
    label_name = cfg.label_set or manifest.header.label_set or DEFAULT_LABEL_SETS.get(manifest.header.corpus)
    if not label_name:
        raise UserError(f"{cfg.manifest}: no label set given and the corpus {manifest.header.corpus!r} has no "
                        "default; pass --label-set")
    label_set = load_label_set(label_name)
    rule = ValidationRule(fraction=cfg.val_fraction, by=cfg.val_by, seed=cfg.split_seed)  # type: ignore[arg-type]
    fold_set = make_folds(manifest, cfg.protocol, label_set=label_set, rule=rule, options=cfg.protocol_options)
    folds = fold_set.folds if cfg.folds is None else [fold_set.fold(name) for name in cfg.folds]
    utterances = list(fold_set.utterances.values())
    if cfg.per_fold():
        fold_data = {f.name: load_fusion_data(utterances, label_set, cfg.views(f.name), augmented=cfg.augmented)
                     for f in folds}
    else:
        shared = load_fusion_data(utterances, label_set, views, augmented=cfg.augmented)
        fold_data = {f.name: shared for f in folds}
    for fold in folds:
        _check_adaptation(fold_data[fold.name], fold, fold_set)
    robust, robust_info = _robustness_data(cfg, utterances, label_set, folds, fold_data, fold_set)
    first = fold_data[folds[0].name]
    card = {**fold_set.card.to_dict(), "dropped_rejected_at_extraction": len(first.dropped_rejected),
            "augmented_training_copies": sum(first.is_copy(row) for row in range(len(first)))}
    return _Plan(cfg=cfg, head_options=head_options, head_resolved=head_resolved, train=train,
                 label_name=label_name, fold_data=fold_data, folds=folds, card=card, robust=robust,
                 robust_info=robust_info)


def _check_adaptation(data: FusionData, fold: Fold, fold_set: FoldSet) -> None:
    """Refuse a store whose upstream was adapted (``ser finetune``) with this fold's test data."""
    test_speakers = {s for uid in fold.test if (s := fold_set.utterances[uid].speaker) is not None}
    for modality in data.modalities.values():
        if not modality.adaptation:
            continue
        try:
            check_fold(AdaptationRecord.from_dict(modality.adaptation), fold=fold.name, test_ids=list(fold.test),
                       test_speakers=test_speakers, speaker_independent=fold_set.card.speaker_independent,
                       store=str(modality.view.store))
        except AdaptationError as err:
            raise DataError(str(err)) from err


def _robustness_data(cfg: FitConfig, utterances: list[Utterance], label_set: LabelSet, folds: list[Fold],
                     fold_data: dict[str, FusionData], fold_set: FoldSet
                     ) -> tuple[dict[str, dict[str, FusionData]], dict[str, dict[str, Any]]]:
    """Per fold, the data with its audio read from each corrupted copy (``cfg.robustness``)."""
    if not cfg.robustness:
        return {}, {}
    if cfg.audio is None:
        raise UserError("robustness stores replace the audio input: pass --audio too")
    robust: dict[str, dict[str, FusionData]] = {fold.name: {} for fold in folds}
    info: dict[str, dict[str, Any]] = {}
    for entry in cfg.robustness:
        key = Path(entry.partition(":")[0]).name
        for fold in folds:
            clean = fold_data[fold.name]
            store = Path(entry.partition(":")[0].replace(FOLD_PLACEHOLDER, fold.name))
            views = {m: replace(d.view, store=store) if m == "audio" else d.view for m, d in clean.modalities.items()}
            variant = load_fusion_data(utterances, label_set, views, augmented=False)
            _check_adaptation(variant, fold, fold_set)
            robust[fold.name][key] = variant
            corruption = variant.modalities["audio"].corruption or {"type": store.stem}
            info[key] = {"store": entry, "corruption": corruption}
    return robust, info


def run_fit(cfg: FitConfig) -> Path:
    """Run every requested fold and seed; write and return the run directory.

    Everything is checked and loaded first; the run directory is created only then (log records of
    that phase are buffered and written to its ``train.log``)."""
    deterministic_cuda_setup(cfg.train.deterministic)  # before anything can initialise CUDA
    ser_logger = logging.getLogger("ser")
    ser_logger.setLevel(min(ser_logger.level or logging.INFO, logging.INFO))
    buffer = MemoryHandler(capacity=1 << 16, flushLevel=logging.CRITICAL + 1)  # flushed by hand only
    ser_logger.addHandler(buffer)
    handler: logging.Handler | None = None
    try:
        plan = _prepare(cfg)
        run_dir = Path(cfg.out) / cfg.slug()
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "train.log", mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        buffer.setTarget(handler)
        buffer.flush()
        ser_logger.removeHandler(buffer)
        ser_logger.addHandler(handler)
        return _run(plan, run_dir)
    finally:
        ser_logger.removeHandler(buffer)
        buffer.close()
        if handler is not None:
            ser_logger.removeHandler(handler)
            handler.close()


def _run(plan: _Plan, run_dir: Path) -> Path:
    cfg, data = plan.cfg, plan.data
    per_fold = {fold: {m: {"view": d.view.describe(), **d.provenance} for m, d in fold_data.modalities.items()}
                for fold, fold_data in plan.fold_data.items()} if cfg.per_fold() else None
    _write_yaml(run_dir / "config.yaml", {
        "config": {**cfg.to_dict(), "head": plan.head_options, "train": asdict(plan.train)},
        "head_resolved": plan.head_resolved,
        "train_preset": train_preset(cfg.fusion),
        "label_set": plan.label_name, "protocol_card": plan.card,
        "inputs": {m: {"view": d.view.describe(), **d.provenance} for m, d in data.modalities.items()},
        **({"inputs_per_fold": per_fold} if per_fold else {}),
        **({"robustness": plan.robust_info} if plan.robust_info else {}),
    })
    results: list[FoldResult] = []
    for seed in cfg.seeds:
        for fold in plan.folds:
            fold_data = plan.fold_data[fold.name]
            extra = {key: (variant, variant.index_of(fold.test)) for key, variant in plan.robust.get(fold.name,
                                                                                                    {}).items()}
            results.append(train_fold(fold_data, fold.name, fold_data.fold_indices(fold), fusion=cfg.fusion,
                                      head_options=plan.head_options, cfg=plan.train, seed=seed, extra_tests=extra))
            logger.info("fold %s seed %d: test UA %.2f WA %.2f macro-F1 %.2f", fold.name, seed,
                        100 * results[-1].test["ua"], 100 * results[-1].test["wa"], 100 * results[-1].test["macro_f1"])
    summary = {
        "protocol_card": plan.card, "label_set": plan.label_name, "classes": list(data.classes),
        "fusion": cfg.fusion,
        "runs": [r.to_dict() for r in results],
        "test": aggregate([r.test for r in results]),
        "validation": aggregate([r.validation for r in results]),
        "confusion": _summed_confusion(results, len(data.classes)),
    }
    if plan.robust_info:
        summary["robustness"] = [
            {**info, "key": key, "test": aggregate([r.robustness[key] for r in results]),
             "runs": [{"fold": r.fold, "seed": r.seed, "test": r.robustness[key]} for r in results]}
            for key, info in plan.robust_info.items()]
    _write_predictions(run_dir / "predictions.csv", results, data.classes)
    plot_confusion(run_dir / "confusion.png", summary["confusion"], list(data.classes))
    _write_json(run_dir / "metrics.json", summary)  # last: its presence means the run is complete
    return run_dir


def _summed_confusion(results: list[FoldResult], n_classes: int) -> list[list[int]]:
    total = np.zeros((n_classes, n_classes), dtype=np.int64)
    for result in results:
        total += np.asarray(result.test["confusion"], dtype=np.int64)
    return total.tolist()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    _atomic_write(path, json.dumps(record, indent=1, default=str))


def _write_yaml(path: Path, record: dict[str, Any]) -> None:
    import yaml

    _atomic_write(path, yaml.safe_dump(json.loads(json.dumps(record, default=str)), sort_keys=False))


def _write_predictions(path: Path, results: list[FoldResult], classes: tuple[str, ...]) -> None:
    columns = ["fold", "seed", "id", "true", "pred", *[f"p_{c}" for c in classes]]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for result in results:
            writer.writerows(result.predictions)
    os.replace(tmp, path)
