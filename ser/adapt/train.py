"""Adapting the upstream on one fold: data of the fold's training rows only, early stopping on its
validation rows, the best state saved as a checkpoint with its provenance.

Layout of ``<out>/<fold>/checkpoint/`` (what ``ser extract --checkpoint`` takes): the
``save_pretrained`` model and feature-extractor files, ``head.pt`` (the classification or projection
head, for reference), ``history.json`` and, written last, ``ser_finetune.json``: mode, base model,
fold, protocol, manifest sha256, the train / validation ids and speakers that shaped the weights,
the excluded test speakers, the trainable parameters, the config, the best epoch and the weights'
``tensors_sha256``. The same provenance is embedded in the safetensors metadata of the weights and
registered under that digest ([`register`][ser.cache.adaptation.register]), so the weights stay
recognisable as adapted without the side file.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ser.adapt.config import FinetuneConfig
from ser.adapt.data import Clip, CropDataset, loader
from ser.adapt.model import (
    ClassifierHead,
    ProjectionHead,
    hidden_size,
    mean_embedding,
    nt_xent,
    save_pretrained,
    set_train_mode,
    unfreeze_top,
)
from ser.atomic_files import atomic_path
from ser.cache.adaptation import METADATA_KEY, PROVENANCE_NAME, AdaptationError, register
from ser.cache.provenance import environment, utc_now
from ser.devices import resolve_device
from ser.early_stopping import EarlyStopping
from ser.errors import UserError
from ser.extract.base import require
from ser.extract.hf import load_pretrained, tensors_sha256
from ser.manifests.labels import LabelSet, choose_label_set
from ser.manifests.protocols import Fold, FoldSet, ValidationRule, make_folds
from ser.manifests.schema import Manifest, file_sha256, read_manifest
from ser.metrics import unweighted_accuracy_of
from ser.seeding import seed_everything

logger = logging.getLogger(__name__)


@dataclass
class FoldAdaptation:
    """What adapting one fold produced."""

    fold: str
    """The protocol fold."""
    checkpoint: Path
    """The folder of the adapted checkpoint."""
    best_epoch: int
    """The epoch whose state was saved."""
    best_score: float
    """Validation UA (supervised) or NT-Xent loss (contrastive) of the saved state."""
    trainable: list[str] = field(default_factory=list)
    """Names of the parameters that were trained."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per-epoch training and validation values."""
    skipped: bool = False
    """True when a finished checkpoint was found and reused."""


def fold_set_of(cfg: FinetuneConfig) -> tuple[Manifest, LabelSet, FoldSet]:
    manifest = read_manifest(cfg.manifest)
    label_set = choose_label_set(manifest, cfg.label_set).label_set
    if label_set is None:
        raise UserError(f"{cfg.manifest}: no label set given and the corpus has no default; pass --label-set")
    rule = ValidationRule(fraction=cfg.val_fraction, by=cfg.val_by, seed=cfg.split_seed)  # type: ignore[arg-type]
    folds = make_folds(manifest, cfg.protocol, label_set=label_set, rule=rule, options=cfg.protocol_options)
    return manifest, label_set, folds


def _clips(manifest: Manifest, folds: FoldSet, label_set: LabelSet, ids: tuple[str, ...]) -> list[Clip]:
    clips = []
    for uid in ids:
        row = folds.utterances[uid]
        path = manifest.audio_path(row)
        if path is None:
            logger.warning("%s: no audio, left out of the adaptation", uid)
            continue
        label = label_set.index_of(row)
        clips.append(Clip(id=uid, path=str(path), start=row.start, end=row.end, label=-1 if label is None else label))
    return clips


class _Trainer:
    """One fold's optimisation (model, head, data) for either mode."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        upstream: nn.Module,
        n_classes: int,
        sample_rate: int,
        normalize: bool,
        train: list[Clip],
        validation: list[Clip],
        device: torch.device,
    ) -> None:
        self.cfg, self.upstream, self.device = cfg, upstream.to(device), device
        hidden = hidden_size(upstream)
        self.supervised = cfg.mode == "supervised"
        self.n_classes = n_classes
        self.head: nn.Module = (
            ClassifierHead(hidden, n_classes) if self.supervised else ProjectionHead(hidden, cfg.projection_dim)
        ).to(device)
        views = 1 if self.supervised else 2
        self.train_data = CropDataset(
            train,
            sample_rate=sample_rate,
            crop_seconds=cfg.crop,
            views=views,
            seed=cfg.seed,
            normalize=normalize,
            random_crops=True,
        )
        self.val_data = CropDataset(
            validation,
            sample_rate=sample_rate,
            crop_seconds=cfg.eval_seconds if self.supervised else cfg.crop,
            views=views,
            seed=cfg.seed + 1,
            normalize=normalize,
            random_crops=not self.supervised,
        )
        trainable = [p for p in upstream.parameters() if p.requires_grad]
        groups = [{"params": list(self.head.parameters()), "lr": cfg.head_lr}]
        if trainable:
            groups.append({"params": trainable, "lr": cfg.lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)

    def _loss(self, crops: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, T) crops -> (loss, supervised logits or an empty tensor)."""
        crops = crops.to(self.device)
        if self.supervised:
            logits = self.head(mean_embedding(self.upstream, crops[:, 0]))
            return nn.functional.cross_entropy(logits, labels.to(self.device)), logits
        b = crops.shape[0]
        projected = self.head(mean_embedding(self.upstream, crops.flatten(0, 1))).view(b, 2, -1)
        return nt_xent(projected[:, 0], projected[:, 1], self.cfg.temperature), torch.empty(0)

    def train_epoch(self, epoch: int) -> float:
        set_train_mode(self.upstream)
        self.head.train()
        self.train_data.epoch = epoch
        total, count = 0.0, 0
        batches = loader(
            self.train_data,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            seed=self.cfg.seed,
            num_workers=self.cfg.num_workers,
            drop_last=not self.supervised,
        )
        for batch in batches:
            if batch is None or (not self.supervised and batch[0].shape[0] < 2):
                continue
            loss, _ = self._loss(*batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * batch[0].shape[0]
            count += batch[0].shape[0]
        return total / max(count, 1)

    @torch.inference_mode()
    def validate(self) -> float:
        """Validation UA (supervised, higher is better) or NT-Xent loss (contrastive, lower is better)."""
        self.upstream.eval()
        self.head.eval()
        losses, trues, preds = [], [], []
        batches = loader(
            self.val_data, batch_size=self.cfg.batch_size, shuffle=False, seed=0, num_workers=self.cfg.num_workers
        )
        for batch in batches:
            if batch is None or (not self.supervised and batch[0].shape[0] < 2):
                continue
            loss, logits = self._loss(*batch)
            losses.append((float(loss), batch[0].shape[0]))
            if self.supervised:
                trues.append(batch[1].numpy())
                preds.append(logits.argmax(dim=1).cpu().numpy())
        if not losses:
            raise UserError(
                "no usable validation audio for the adaptation (all rejected?); check `ser manifest validate`"
            )
        if self.supervised:
            return unweighted_accuracy_of(np.concatenate(trues), np.concatenate(preds), self.n_classes)
        return sum(value * n for value, n in losses) / sum(n for _, n in losses)

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        trainable = {n: p.detach().clone() for n, p in self.upstream.named_parameters() if p.requires_grad}
        return {"upstream": trainable, "head": {k: v.detach().clone() for k, v in self.head.state_dict().items()}}

    def load(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        parameters = dict(self.upstream.named_parameters())
        with torch.no_grad():
            for name, value in state["upstream"].items():
                parameters[name].copy_(value)
        self.head.load_state_dict(state["head"])


def adapt_fold(cfg: FinetuneConfig, fold_name: str, out: Path) -> FoldAdaptation:
    """Adapt the upstream on ``fold_name``'s training rows; the checkpoint goes to ``out/<fold>/checkpoint``
    (reused when it is already complete)."""
    manifest, label_set, folds = fold_set_of(cfg)
    fold = folds.fold(fold_name)
    checkpoint = Path(out) / fold.name / "checkpoint"
    if (checkpoint / PROVENANCE_NAME).is_file():
        provenance = json.loads((checkpoint / PROVENANCE_NAME).read_text(encoding="utf-8"))
        if provenance.get("config") == cfg.to_dict():
            logger.info("fold %s: finished checkpoint found at %s", fold.name, checkpoint)
            _register(provenance)
            return FoldAdaptation(
                fold=fold.name,
                checkpoint=checkpoint,
                best_epoch=provenance["best_epoch"],
                best_score=provenance["best_score"],
                trainable=provenance["trainable"],
                skipped=True,
            )
        raise UserError(f"{checkpoint} holds an adaptation with other settings; choose another --out or delete it")
    if not fold.validation:
        raise UserError(f"fold {fold.name}: empty validation set; raise --val-fraction or use --val-by utterance")
    seed_everything(cfg.seed, deterministic=True)
    transformers = require("transformers", "ssl")
    device = torch.device(resolve_device(cfg.device))
    upstream = load_pretrained(transformers.AutoModel, cfg.model)
    try:
        feature_extractor = load_pretrained(transformers.AutoFeatureExtractor, cfg.model)
        sample_rate = int(feature_extractor.sampling_rate)
        normalize = bool(getattr(feature_extractor, "do_normalize", False))
    except (OSError, ValueError, UserError):
        logger.warning("%s has no feature-extractor config; assuming 16 kHz input without normalisation", cfg.model)
        feature_extractor, sample_rate, normalize = None, 16000, False
    trainable = unfreeze_top(upstream, cfg.layers_to_train)
    train = _clips(manifest, folds, label_set, fold.train)
    validation = _clips(manifest, folds, label_set, fold.validation)
    trainer = _Trainer(cfg, upstream, len(label_set.classes), sample_rate, normalize, train, validation, device)
    logger.info(
        "fold %s: %s adaptation of %s, %d trainable tensors, %d train / %d validation utterances",
        fold.name,
        cfg.mode,
        cfg.model,
        len(trainable),
        len(train),
        len(validation),
    )
    # Epoch 0 (the starting weights) is logged as a baseline but is not a candidate: the checkpoint
    # is always a trained state, the best epoch on validation.
    history: list[dict[str, float]] = [{"epoch": 0, "validation": trainer.validate()}]
    stopping = EarlyStopping(patience=cfg.patience, mode="max" if cfg.mode == "supervised" else "min")
    best_state = trainer.state()
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        train_loss = trainer.train_epoch(epoch)
        score = trainer.validate()
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "validation": score, "seconds": time.perf_counter() - start}
        )
        logger.info(
            "fold %s epoch %d: train loss %.4f, validation %s %.4f",
            fold.name,
            epoch,
            train_loss,
            "UA" if cfg.mode == "supervised" else "NT-Xent",
            score,
        )
        if stopping.update(epoch, score):
            best_state = trainer.state()
        elif stopping.should_stop:
            break
    trainer.load(best_state)
    _save(
        checkpoint,
        trainer,
        feature_extractor,
        _provenance(cfg, manifest, folds, fold, label_set, trainable, stopping.best_epoch, stopping.best_score),
        history,
    )
    return FoldAdaptation(
        fold=fold.name,
        checkpoint=checkpoint,
        best_epoch=stopping.best_epoch,
        best_score=stopping.best_score,
        trainable=trainable,
        history=history,
    )


def _provenance(
    cfg: FinetuneConfig,
    manifest: Manifest,
    folds: FoldSet,
    fold: Fold,
    label_set: LabelSet,
    trainable: list[str],
    best_epoch: int,
    best_score: float,
) -> dict[str, Any]:
    def speakers(ids: tuple[str, ...]) -> list[str]:
        return sorted({s for uid in ids if (s := folds.utterances[uid].speaker) is not None})

    return {
        "format": "ser-finetune",
        "version": 1,
        "mode": cfg.mode,
        "base_model": cfg.model,
        "fold": fold.name,
        "protocol": cfg.protocol,
        "protocol_options": cfg.protocol_options,
        "label_set": label_set.name,
        "validation_rule": {"fraction": cfg.val_fraction, "by": cfg.val_by, "seed": cfg.split_seed},
        "manifest": {
            "path": str(Path(cfg.manifest).resolve()),
            "sha256": file_sha256(cfg.manifest),
            "corpus": manifest.header.corpus,
        },
        "trained_on": {
            "train_ids": list(fold.train),
            "validation_ids": list(fold.validation),
            "speakers": speakers(fold.train + fold.validation),
            "labels_used": cfg.mode == "supervised",
        },
        "excluded": {"test_speakers": speakers(fold.test), "n_test_ids": len(fold.test)},
        "trainable": trainable,
        "config": cfg.to_dict(),
        "best_epoch": best_epoch,
        "best_score": best_score,
        "created": utc_now(),
        "environment": environment(),
    }


def _save(
    checkpoint: Path,
    trainer: _Trainer,
    feature_extractor: Any,
    provenance: dict[str, Any],
    history: list[dict[str, float]],
) -> None:
    """Write everything under a temporary name (``<checkpoint>.partial``, a killed run's leftover cleared
    first), provenance last, then swap it in for the folder at ``checkpoint``."""
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    upstream = trainer.upstream.to("cpu")
    provenance = {**provenance, "tensors_sha256": tensors_sha256(upstream)}
    with atomic_path(checkpoint, temp=checkpoint.with_name(checkpoint.name + ".partial")) as partial:
        partial.mkdir()
        save_pretrained(upstream, partial)
        _embed(partial, provenance)
        if feature_extractor is not None:
            feature_extractor.save_pretrained(partial)
        torch.save(trainer.head.to("cpu").state_dict(), partial / "head.pt")
        (partial / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
        (partial / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=1, default=str), encoding="utf-8")
    _register(provenance)


def _embed(folder: Path, provenance: dict[str, Any]) -> None:
    """Add the provenance to the metadata of every safetensors weights file in ``folder`` (the tensors are
    rewritten unchanged), so a copy of the weights without ``ser_finetune.json`` still says what adapted them."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        logger.warning("%s: no safetensors weights to embed the adaptation's provenance in", folder)
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        metadata[METADATA_KEY] = json.dumps(provenance, default=str)
        save_file(load_file(str(path)), str(path), metadata=metadata)


def _register(provenance: dict[str, Any]) -> None:
    """Register the provenance under its weights' tensor digest (a checkpoint saved before digests were
    recorded is not registered: it stays recognisable by its side file only)."""
    digest = provenance.get("tensors_sha256")
    if not isinstance(digest, str):
        logger.warning("a checkpoint without tensors_sha256 in its %s is recognised by that file only", PROVENANCE_NAME)
        return
    try:
        register(digest, provenance)
    except AdaptationError as err:
        raise UserError(str(err)) from err
