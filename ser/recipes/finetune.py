"""Fine-tuning per fold: adapt an upstream to each protocol fold, optionally extract the whole manifest
with each fold's checkpoint, then fit one head over all the folds, each tested on the features of its
own checkpoint (``ser finetune --fold all --extract --fit-config fit.yaml``).

Everything that can be refused (unknown folds, a preset the family lacks, a fit config that would change
the folds or validation speakers the checkpoints were selected on) is refused before any training.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ser.adapt.config import FAMILIES, FinetuneConfig
from ser.adapt.train import FoldAdaptation, adapt_fold, fold_set_of
from ser.errors import UserError
from ser.extract.registry import build_extractor, extractor_preset
from ser.extract.runner import RunOptions, RunReport, run_extraction
from ser.fusion.config import FitConfig, config_from_dict, read_fit_record
from ser.fusion.run import run_fit

logger = logging.getLogger(__name__)

FIXED_BY_FINETUNE = ("manifest", "protocol", "label_set", "protocol_options", "val_fraction", "val_by", "split_seed")
"""Fit keys that must be the fine-tuning's: the same folds and the same validation speakers."""

STORE_NAME = "features.h5"
"""Each fold's store: ``OUT/<fold>/features.h5``, beside its ``checkpoint`` folder."""

DEFAULT_FIT_VIEW = "layer=weighted"
"""View of the per-fold stores a fit config without an ``audio`` key gets."""


@dataclass(frozen=True)
class FoldOutcome:
    """One fold's work: its adapted checkpoint and, when asked for, the store extracted with it."""

    adaptation: FoldAdaptation
    """The fold's adapted checkpoint and its training record."""
    features: RunReport | None = None
    """The extraction of the whole manifest into ``OUT/<fold>/features.h5`` (None without ``extract``)."""

    @property
    def fold(self) -> str:
        """The fold's name."""
        return self.adaptation.fold


@dataclass(frozen=True)
class FinetuneResult:
    """What [`run_finetune`][ser.recipes.finetune.run_finetune] did, fold by fold, and the fit's run directory when it
    ran one."""

    folds: list[FoldOutcome] = field(default_factory=list)
    """One outcome per fold, in protocol order."""
    fit_dir: Path | None = None
    """The run directory of the fit over the per-fold stores (None when no fit ran)."""


class FinetuneHooks(Protocol):
    """What [`run_finetune`][ser.recipes.finetune.run_finetune] calls as each fold's steps finish (adaptation and
    extraction take long); the ``ser finetune`` command prints them. Without hooks the recipe logs them."""

    def adapted(self, adaptation: FoldAdaptation) -> None:
        """A fold's checkpoint is saved (or a finished one was found and reused)."""

    def extracted(self, fold: str, report: RunReport) -> None:
        """A fold's store is complete."""


class LogHooks:
    """The default hooks: log each finished step at INFO."""

    def adapted(self, adaptation: FoldAdaptation) -> None:
        logger.info("fold %s: checkpoint %s", adaptation.fold, adaptation.checkpoint)

    def extracted(self, fold: str, report: RunReport) -> None:
        logger.info("fold %s: features %s", fold, report.output)


def choose_preset(family: str, preset: str | None) -> str:
    """The family's preset to use: ``preset``, or the family's first one when None."""
    if family not in FAMILIES:
        raise UserError(f"--model must be one of {', '.join(FAMILIES)}, not {family!r}")
    return extractor_preset(family, preset)


def run_finetune(
    cfg: FinetuneConfig,
    out: Path,
    *,
    folds: Sequence[str] | None = None,
    preset: str | None = None,
    extract: bool = False,
    seq: str = "none",
    fit_config: Path | None = None,
    fit_view: str = DEFAULT_FIT_VIEW,
    hooks: FinetuneHooks | None = None,
) -> FinetuneResult:
    """Adapt ``cfg``'s upstream to each fold into ``OUT/<fold>/checkpoint``; with ``extract`` extract the
    whole manifest with that checkpoint into ``OUT/<fold>/features.h5`` (``seq``: layers also stored as
    sequences); with ``fit_config`` (a ``ser fit`` YAML) then fit over all the folds, each tested on its
    own store. Finished checkpoints and stores are reused, so an interrupted call resumes.

    ``folds``: fold names of ``cfg.protocol`` (None: every fold). ``preset``: the family's preset the
    stores are extracted as (None: the first; ``cfg.model`` is the starting weights either way).
    ``fit_view``: the per-fold view for a fit config that names no ``audio`` input.

    Raises [`UserError`][ser.errors.UserError] before any training for unknown folds or presets, a fit
    config without ``extract``, and a fit config that sets the folds, label set or validation carving
    differently from ``cfg`` or names one store for every fold.
    """
    if fit_config is not None and not extract:
        raise UserError("--fit-config fits the per-fold features: add --extract")
    chosen = choose_preset(cfg.family, preset)
    names = fold_names(cfg, folds)
    fit = fold_fit_config(cfg, names, out, fit_config, fit_view) if fit_config is not None else None
    hooks = hooks or LogHooks()
    outcomes = []
    for name in names:
        adaptation = adapt_fold(cfg, name, out)
        hooks.adapted(adaptation)
        features = None
        if extract:
            features = _extract_fold(cfg, chosen, adaptation.checkpoint, out / name / STORE_NAME, seq)
            hooks.extracted(name, features)
        outcomes.append(FoldOutcome(adaptation=adaptation, features=features))
    fit_dir = run_fit(fit) if fit is not None else None
    return FinetuneResult(folds=outcomes, fit_dir=fit_dir)


def fold_names(cfg: FinetuneConfig, folds: Sequence[str] | None) -> list[str]:
    """``folds`` checked against the protocol's folds (every fold, in the protocol's order, for None)."""
    _, _, fold_set = fold_set_of(cfg)
    if folds is None:
        return [fold.name for fold in fold_set.folds]
    names = list(folds)
    if not names:
        raise UserError(f"no fold given; name folds of {cfg.protocol} or ask for all of them")
    for name in names:
        fold_set.fold(name)  # an unknown fold is refused by name, with the known ones
    return names


def fold_fit_config(cfg: FinetuneConfig, folds: list[str], out: Path, fit_config: Path, fit_view: str) -> FitConfig:
    """The fit over the fine-tuned folds: ``fit_config``'s YAML with the folds, label set and validation
    carving of ``cfg`` (a YAML that sets them differently is refused) and, unless it names its own,
    ``OUT/{fold}/features.h5:<fit_view>`` as the audio input, so each fold is tested on its own store."""
    record: dict[str, Any] = read_fit_record(fit_config)
    ours = {key: getattr(cfg, key) for key in FIXED_BY_FINETUNE}
    clashes = sorted(key for key in FIXED_BY_FINETUNE if key in record and record[key] != ours[key])
    if clashes:
        raise UserError(
            f"{fit_config} sets {', '.join(clashes)} differently from the fine-tuning; leave them out "
            "(the fit must use the folds and validation speakers the checkpoints were selected on)"
        )
    record = {**record, **ours, "folds": folds}
    record.setdefault("audio", f"{out}/{{fold}}/{STORE_NAME}:{fit_view}")
    if "{fold}" not in str(record["audio"]):
        raise UserError(
            f"{fit_config}: audio {record['audio']!r} names one store for every fold; with fine-tuned "
            "checkpoints each fold needs its own (leave audio out, or put {fold} in its path)"
        )
    return config_from_dict(record)


def _extract_fold(cfg: FinetuneConfig, preset: str, checkpoint: Path, store: Path, seq: str) -> RunReport:
    """Extract the whole manifest with one fold's checkpoint; the model is released before the next fold."""
    extractor = build_extractor(cfg.family, preset, checkpoint=str(checkpoint), device=cfg.device)
    report = run_extraction(
        cfg.manifest, extractor, store, RunOptions(seq=seq, num_workers=cfg.num_workers, progress=False)
    )
    del extractor
    gc.collect()
    return report
