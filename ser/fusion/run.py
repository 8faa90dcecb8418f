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
                      (and pooled: the metrics of all folds' test predictions taken as one set,
                      per seed, then mean ± std over seeds); with ``--search`` the candidate chosen
                      per fold; with ``--ensemble`` the per-fold seed ensembles
``predictions.csv``   one line per test utterance, fold and seed, with class probabilities
``predictions_ensemble.csv``  with ``--ensemble``: one line per test utterance and fold, the mean of
                      the seed members' probabilities
``confusion.png``     confusion matrix summed over folds and seeds (row-normalised)
``models/``           every tested member's weights and what inference needs (and with ``--final``
                      one model trained on every labelled row); see [`ser.fusion.model_files`][ser.fusion.model_files]
``train.log``         the log of the run

The same config and seeds give the same numbers (and the same directory name).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import Any

import numpy as np

from ser.atomic_files import atomic_open, write_json, write_text
from ser.cache.adaptation import AdaptationError, check_fold, store_adaptation
from ser.errors import UnknownNameError, UserError, write_failure
from ser.fusion.config import (
    FOLD_PLACEHOLDER,
    FitConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    search_candidates,
)
from ser.fusion.data import DataError, FusionData, load_fusion_data
from ser.fusion.departures import config_departures, input_departures, recipe_loss_options, silence_floor
from ser.fusion.engine import select_members
from ser.fusion.final import choose_recipe, labelled_rows, train_final
from ser.fusion.heads import HEADS, head_module, head_recipe, resolve_head_config, train_preset
from ser.fusion.losses import loss_options
from ser.fusion.metrics import aggregate, compute_metrics, metrics_from_confusion
from ser.fusion.model_files import FINAL, MODELS_DIR, input_record, member_name, member_record, save_member, write_index
from ser.fusion.plots import plot_confusion
from ser.fusion.robust_inputs import check_robustness_store, training_copies, training_noise
from ser.fusion.train import FoldResult, MemberSpec, Selection, check_head, test_member
from ser.manifests.labels import LabelSet, choose_label_set
from ser.manifests.protocols import Fold, FoldSet, ValidationRule, make_folds
from ser.manifests.schema import Manifest, Utterance, read_manifest
from ser.options import coerce_fields, coerce_like
from ser.run_lock import RunBusyError, RunLock, held
from ser.seeding import deterministic_cuda_setup
from ser.threads import blas_threads
from ser.views import View, store_of

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
            raise UserError(f"head {fusion} takes {kind} {modality} features, got {views[modality].describe()}; {hint}")
    extra = sorted(set(views) - set(needs))
    if extra:
        raise UserError(f"head {fusion} does not use {', '.join('--' + m for m in extra)}")


@dataclass
class Candidate:
    """One point of a validation search (the only one without ``--search``)."""

    values: dict[str, Any]
    """Dotted key -> value (empty without a search)."""
    head_options: dict[str, Any]
    """The ``head.*`` overrides the head is built with (the config's, then the candidate's)."""
    head_resolved: dict[str, Any]
    """Every field of the head's config with its value, as recorded in ``config.yaml``."""
    train: TrainConfig
    """The training settings with the candidate's ``train.*`` values applied."""


def _candidates(cfg: FitConfig, train: TrainConfig) -> list[Candidate]:
    """Every search candidate with its head options and train config, all checked before anything runs."""
    out = []
    for values in search_candidates(cfg.search):
        head = dict(cfg.head)
        changes: dict[str, Any] = {}
        for key, value in values.items():
            section, _, name = key.partition(".")
            (head if section == "head" else changes)[name] = value
        head_options, head_resolved = resolve_head_config(cfg.fusion, head)
        candidate_train = train
        if changes:
            known = {f.name for f in fields(TrainConfig)}
            unknown = sorted(set(changes) - known)
            if unknown:
                raise UserError(
                    f"search keys {['train.' + k for k in unknown]} are not train settings; known: {sorted(known)}"
                )
            candidate_train = replace(train, **coerce_fields(TrainConfig, changes, "train"))
            candidate_train.check()
        out.append(Candidate(values, head_options, head_resolved, candidate_train))
    return out


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
    candidates: list[Candidate] = field(default_factory=list)
    """The search candidates (one, the plain config, without ``--search``)."""
    departures: list[str] = field(default_factory=list)
    """Where the fit departs from its recipe (``ser.fusion.departures``)."""

    @property
    def folds_by_name(self) -> dict[str, Fold]:
        return {fold.name: fold for fold in self.folds}

    @property
    def data(self) -> FusionData:
        """The first fold's data (classes and inputs are the same for every fold)."""
        return self.fold_data[self.folds[0].name]


def _prepare(cfg: FitConfig) -> _Plan:
    """Validate everything a fit needs and load its data, before any run directory exists: a fit that
    cannot start (unknown head, wrong inputs or options, bad protocol, missing store) leaves nothing."""
    cfg.check()
    views = cfg.views()
    _check_inputs(cfg.fusion, views)
    recipe = head_recipe(cfg.fusion, cfg.recipe)
    departures = config_departures(cfg)
    head_options, head_resolved = resolve_head_config(cfg.fusion, cfg.head)
    if cfg.train.specaugment and head_resolved.get("specaugment"):
        raise UserError(
            f"head {cfg.fusion} applies its own SpecAugment (head.specaugment); set "
            "head.specaugment=false to use train.specaugment instead, or keep only the head's"
        )
    try:
        accepted = loss_options(cfg.train.loss)
    except UnknownNameError as err:
        raise UnknownNameError(f"train.loss: {err}") from None
    unknown = sorted(set(cfg.train.loss_options) - set(accepted))
    if unknown:
        raise UserError(
            f"train.loss_options {unknown} are not options of loss {cfg.train.loss!r}; it takes "
            f"{', '.join(accepted) or 'none'}"
        )
    given = recipe_loss_options(recipe, cfg.train.loss, cfg.train.loss_options)
    train = replace(cfg.train, loss_options=coerce_like(given, accepted, "train.loss_options"))
    candidates = _candidates(cfg, train)
    if cfg.final and cfg.per_fold():
        raise UserError(
            "--final trains one model on every fold's rows, but the stores differ per fold ({fold} in a "
            "store path): there is no single feature space to train it in"
        )
    if cfg.ensemble and len(cfg.seeds) < 2:
        raise UserError("--ensemble averages the seed members of each fold: give two or more seeds (--seeds 0,1,2)")
    learn_layers = HEADS[cfg.fusion].engine == "torch"
    manifest = read_manifest(cfg.manifest)
    label_set = choose_label_set(manifest, cfg.label_set).label_set
    if label_set is None:
        raise UserError(
            f"{cfg.manifest}: no label set given and the corpus {manifest.header.corpus!r} has no "
            "default; pass --label-set"
        )
    label_name = cfg.label_set or manifest.header.label_set or label_set.name
    rule = ValidationRule(fraction=cfg.val_fraction, by=cfg.val_by, seed=cfg.split_seed)  # type: ignore[arg-type]
    fold_set = make_folds(manifest, cfg.protocol, label_set=label_set, rule=rule, options=cfg.protocol_options)
    folds = fold_set.folds if cfg.folds is None else [fold_set.fold(name) for name in cfg.folds]
    utterances = list(fold_set.utterances.values())
    if cfg.per_fold():
        fold_data = {
            f.name: load_fusion_data(
                utterances,
                label_set,
                cfg.views(f.name),
                augmented=cfg.augmented,
                learn_layers=learn_layers,
                manifest=manifest,
            )
            for f in folds
        }
    else:
        shared = load_fusion_data(
            utterances, label_set, views, augmented=cfg.augmented, learn_layers=learn_layers, manifest=manifest
        )
        fold_data = {f.name: shared for f in folds}
    for fold in folds:
        _check_adaptation(fold_data[fold.name], fold, fold_set)
    floor = _silence_floor(cfg, head_resolved, fold_data[folds[0].name])
    if floor is not None:  # the log-mel store's own silence value pads the spectrogram heads
        logger.info("head.pad_value=%g: the value of silence in the audio store", floor)
        cfg = replace(cfg, head={**cfg.head, "pad_value": floor})
        head_options, head_resolved = resolve_head_config(cfg.fusion, cfg.head)
        candidates = _candidates(cfg, train)
    departures += input_departures(recipe, cfg.recipe, fold_data[folds[0].name])
    for departure in departures:
        logger.info("departure from the %s recipe of %s: %s", cfg.recipe, cfg.fusion, departure)
    for candidate in candidates:
        check_head(cfg.fusion, fold_data[folds[0].name], candidate.head_options)
    robust, robust_info = _robustness_data(cfg, utterances, label_set, folds, fold_data, fold_set, manifest)
    first = fold_data[folds[0].name]
    card = {
        **fold_set.card.to_dict(),
        "dropped_rejected_at_extraction": len(first.dropped_rejected),
        "augmented_training_copies": training_copies(fold_data, folds),
        **({"training_noise": training_noise(fold_data, folds)} if cfg.robustness else {}),
    }
    return _Plan(
        cfg=cfg,
        head_options=head_options,
        head_resolved=head_resolved,
        train=train,
        label_name=label_name,
        fold_data=fold_data,
        folds=folds,
        card=card,
        robust=robust,
        robust_info=robust_info,
        candidates=candidates,
        departures=departures,
    )


def _silence_floor(cfg: FitConfig, head_resolved: dict[str, Any], data: FusionData) -> float | None:
    """The audio store's silence value for a head that pads with ``pad_value``, unless the fit sets it
    (None where nothing changes)."""
    if "pad_value" not in head_resolved or "pad_value" in cfg.head or "audio" not in data.modalities:
        return None
    floor = silence_floor(data.modalities["audio"].records)
    return None if floor is None or floor == head_resolved["pad_value"] else floor


def _check_adaptation(data: FusionData, fold: Fold, fold_set: FoldSet) -> None:
    """Refuse a store whose upstream was adapted (``ser finetune``) with this fold's test data, or trained on
    the validation rows this fit early-stops on. The adaptation is the store's record, else the registry
    entry of its upstream's ``tensors_sha256`` (weights adapted here whose side file was lost)."""
    test_speakers = {s for uid in fold.test if (s := fold_set.utterances[uid].speaker) is not None}
    for modality in data.modalities.values():
        upstream = {**(modality.provenance.get("upstream") or {}), "adaptation": modality.adaptation}
        try:
            record = store_adaptation(upstream)
            if record is None:
                continue
            check_fold(
                record,
                fold=fold.name,
                test_ids=list(fold.test),
                test_speakers=test_speakers,
                speaker_independent=fold_set.card.speaker_independent,
                store=str(modality.view.store),
                validation_ids=list(fold.validation),
            )
        except AdaptationError as err:
            store = str(modality.view.store)
            raise DataError(str(err) if store in str(err) else f"fold {fold.name}: {store}: {err}") from err


def _robustness_data(
    cfg: FitConfig,
    utterances: list[Utterance],
    label_set: LabelSet,
    folds: list[Fold],
    fold_data: dict[str, FusionData],
    fold_set: FoldSet,
    manifest: Manifest,
) -> tuple[dict[str, dict[str, FusionData]], dict[str, dict[str, Any]]]:
    """Per fold, the data with its audio read from each corrupted copy (``cfg.robustness``)."""
    if not cfg.robustness:
        return {}, {}
    if cfg.audio is None:
        raise UserError("robustness stores replace the audio input: pass --audio too")
    robust: dict[str, dict[str, FusionData]] = {fold.name: {} for fold in folds}
    info: dict[str, dict[str, Any]] = {}
    for entry in cfg.robustness:
        key = Path(store_of(entry)).name
        for fold in folds:
            clean = fold_data[fold.name]
            store = Path(store_of(entry).replace(FOLD_PLACEHOLDER, fold.name))
            views = {m: replace(d.view, store=store) if m == "audio" else d.view for m, d in clean.modalities.items()}
            variant = load_fusion_data(utterances, label_set, views, augmented=False, manifest=manifest)
            _check_adaptation(variant, fold, fold_set)
            check_robustness_store(clean, variant, fold)
            robust[fold.name][key] = variant
            corruption = variant.modalities["audio"].corruption or {"type": store.stem}
            info[key] = {"store": entry, "corruption": corruption}
    return robust, info


Announce = Callable[[FitConfig, list[str]], None]
"""Called once per fit when everything is checked and loaded, before anything is written: the config
and its departures from its recipe (``ser fit`` prints them)."""


def run_fit(cfg: FitConfig, announce: Announce | None = None) -> Path:
    """Run every requested fold and seed; write and return the run directory.

    Everything is checked and loaded first; the run directory is created only then (log records of
    that phase are buffered and written to its ``train.log``)."""
    return run_fits([cfg], announce)[0]


def run_fits(configs: list[FitConfig], announce: Announce | None = None) -> list[Path]:
    """Several fits whose members train together (``ser ablate`` stacks grid cells this way): every
    config is checked and loaded first, then the members of all of them go to one
    [`ser.fusion.engine.select_members`][ser.fusion.engine.select_members] call (members of equal shapes share a stack),
    then each run is tested and written as [`run_fit`][ser.fusion.run.run_fit] would. Each run's ``train.log`` gets the
    whole log. Returns the run directories in the order of ``configs``.

    BLAS products (numpy, scikit-learn) run on one thread, except where a classic head's problem is
    big enough for more to pay (``ser.threads``); progress goes to ``ser.fusion.progress.current()``."""
    with blas_threads(1):
        return _run_fits(configs, announce)


def _run_fits(configs: list[FitConfig], announce: Announce | None) -> list[Path]:
    for cfg in configs:
        deterministic_cuda_setup(cfg.train.deterministic)  # before anything can initialise CUDA
    ser_logger = logging.getLogger("ser")
    ser_logger.setLevel(min(ser_logger.level or logging.INFO, logging.INFO))
    buffer = MemoryHandler(capacity=1 << 16, flushLevel=logging.CRITICAL + 1)  # flushed by hand only
    ser_logger.addHandler(buffer)
    handlers: list[logging.Handler] = []
    locks: list[RunLock] = []
    try:
        plans = [_prepare(cfg) for cfg in configs]
        if announce is not None:
            for cfg, plan in zip(configs, plans, strict=True):
                announce(cfg, plan.departures)
        run_dirs = [run_directory(cfg) for cfg in configs]
        for run_dir in run_dirs:
            locks.append(_lock(run_dir))
            run_dir.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(run_dir / "train.log", mode="w", encoding="utf-8")
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            handlers.append(file_handler)
        for record in buffer.buffer:
            for handler in handlers:
                handler.handle(record)
        buffer.buffer.clear()
        ser_logger.removeHandler(buffer)
        for handler in handlers:
            ser_logger.addHandler(handler)
        if len(configs) > 1:
            logger.info("%d runs train together: %s", len(configs), ", ".join(d.name for d in run_dirs))
        try:
            for plan, run_dir in zip(plans, run_dirs, strict=True):
                _write_config(plan, run_dir)
            specs = [_member_specs(plan) for plan in plans]
            trained = iter(select_members([spec for group in specs for spec in group]))
            for plan, run_dir, group in zip(plans, run_dirs, specs, strict=True):
                _finish(plan, run_dir, [next(trained) for _ in group])
            return run_dirs
        except OSError as err:
            where = err.filename or run_dirs[0]
            raise UserError(
                write_failure(
                    err,
                    where,
                    "a run directory without metrics.json is incomplete (`ser report` and `ser predict` skip it)",
                )
            ) from err
    finally:
        for lock in locks:
            lock.release()
        ser_logger.removeHandler(buffer)
        buffer.close()
        for handler in handlers:
            ser_logger.removeHandler(handler)
            handler.close()


def _lock(run_dir: Path) -> RunLock:
    """The run directory's lock, taken for this fit (a no-op lock when this process holds it already:
    an ``ser ablate`` worker locks its jobs' directories itself); another live process writing the same
    directory (the same config) is refused by name."""
    lock = RunLock(run_dir)
    if held(run_dir):
        return lock  # released by its owner, not here (release() of an unacquired lock does nothing)
    try:
        lock.acquire()
    except RunBusyError as busy:
        raise UserError(
            f"{busy}: the same fit (same config) is being written there; wait for it to finish (its "
            "metrics.json appears last) or give another -o"
        ) from None
    return lock


def run_directory(cfg: FitConfig) -> Path:
    """``<out>/<slug>`` (``<out>/<pinned name>`` for a run ``ser ablate`` pinned to its grid cell's directory,
    ``FitConfig.pinned``), refused unless it is a direct child of ``out`` and ``out`` is a folder (or absent)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: this is a file; give the folder the run directories go in")
    run_dir = out / (cfg.pinned.name if cfg.pinned is not None else cfg.slug())
    if run_dir.resolve().parent != out.resolve():
        raise UserError(f"the run directory {run_dir} would lie outside -o {out}; check --label-set and --fusion")
    return run_dir


def _write_config(plan: _Plan, run_dir: Path) -> None:
    cfg, data = plan.cfg, plan.data
    per_fold = (
        {
            fold: {m: {"view": d.view.describe(), **d.provenance} for m, d in fold_data.modalities.items()}
            for fold, fold_data in plan.fold_data.items()
        }
        if cfg.per_fold()
        else None
    )
    _write_yaml(
        run_dir / "config.yaml",
        {
            "config": {**cfg.to_dict(), "head": plan.head_options, "train": asdict(plan.train)},
            "head_resolved": plan.head_resolved,
            "recipe": {
                "name": cfg.recipe,
                "train": train_preset(cfg.fusion, cfg.recipe, cfg.train.loss),
                "departures": plan.departures,
            },
            "label_set": plan.label_name,
            "protocol_card": plan.card,
            "inputs": {m: {"view": d.view.describe(), **d.provenance} for m, d in data.modalities.items()},
            **({"inputs_per_fold": per_fold} if per_fold else {}),
            **({"robustness": plan.robust_info} if plan.robust_info else {}),
        },
    )


def _finish(plan: _Plan, run_dir: Path, selections: list[Selection]) -> Path:
    """Test the chosen members once and write the run's results (``metrics.json`` last)."""
    cfg, data = plan.cfg, plan.data
    results, search, chosen = _test_members(plan, selections)
    # a deterministic (classic) head gives every seed the same fit: spreads are over its folds only
    deterministic = HEADS[cfg.fusion].engine == "sklearn"
    distinct = [r for r in results if r.seed == cfg.seeds[0]] if deterministic else results
    summary: dict[str, Any] = {
        "protocol_card": plan.card,
        "label_set": plan.label_name,
        "classes": list(data.classes),
        "fusion": cfg.fusion,
        "recipe": cfg.recipe,
        "departures": plan.departures,
        "runs": [r.to_dict() for r in results],
        "aggregated_over": _aggregated_over(deterministic, len(cfg.seeds)),
        "test": aggregate([r.test for r in distinct]),
        "test_pooled": pooled_metrics(distinct, data.classes),
        "validation": aggregate([r.validation for r in distinct]),
        "confusion": _summed_confusion(results, len(data.classes)),
    }
    if search:
        summary["search"] = search
    if cfg.ensemble:
        summary["ensemble"], ensemble_rows = seed_ensembles(results, data.classes)
        _write_csv(
            run_dir / "predictions_ensemble.csv",
            ensemble_rows,
            ["fold", "seeds", "id", "true", "pred", *[f"p_{c}" for c in data.classes]],
        )
    if plan.robust_info:
        summary["robustness"] = [
            {
                **info,
                "key": key,
                "test": aggregate([r.robustness[key] for r in distinct]),
                "runs": [{"fold": r.fold, "seed": r.seed, "test": r.robustness[key]} for r in results],
            }
            for key, info in plan.robust_info.items()
        ]
    _write_predictions(run_dir / "predictions.csv", results, data.classes)
    if cfg.save_models:
        _write_models(plan, run_dir / MODELS_DIR, results, chosen, search)
    elif not (run_dir / MODELS_DIR / "index.json").exists():
        write_index(run_dir / MODELS_DIR, {"fusion": cfg.fusion, "saved": False, "members": [], "final": None})
    else:  # the same config saved its models before (same directory, same numbers): they stay usable
        logger.info("--no-models: the models/ an earlier fit of this config saved are kept")
    plot_confusion(
        run_dir / "confusion.png",
        summary["confusion"],
        list(data.classes),
        head=cfg.fusion,
        recipe=cfg.recipe,
        corpus=plan.card.get("corpus"),
        protocol=cfg.protocol,
        inputs={modality: m.view.describe() for modality, m in data.modalities.items()},
        ua=summary["test_pooled"]["ua"]["mean"],
    )
    _write_json(run_dir / "metrics.json", summary)  # last: its presence means the run is complete
    return run_dir


def _aggregated_over(deterministic: bool, n_seeds: int) -> str:
    """What the mean ± std of a run is over (printed by ``ser fit``, read by ``ser report``)."""
    if n_seeds == 1:
        return "folds"
    return "folds (every seed shares the deterministic fit)" if deterministic else "folds and seeds"


def _member_specs(plan: _Plan) -> list[MemberSpec]:
    """Every member of the fit, fold-major, then search candidate, then seed."""
    cfg = plan.cfg
    return [
        MemberSpec(
            fold=fold.name,
            seed=seed,
            data=plan.fold_data[fold.name],
            rows=plan.fold_data[fold.name].fold_indices(fold),
            fusion=cfg.fusion,
            head_options=c.head_options,
            cfg=c.train,
        )
        for fold in plan.folds
        for c in plan.candidates
        for seed in cfg.seeds
    ]


def _test_members(
    plan: _Plan, selections: list[Selection]
) -> tuple[list[FoldResult], dict[str, Any], dict[str, tuple[int, list[float]]]]:
    """Every member (fold x seed x search candidate, as `_member_specs` lists them) selected on
    validation: per fold keep the candidate with the best validation metric averaged over seeds; test
    only its members, once. Returns the tested members (seed-major, as the folds are listed), the
    search record (empty without a search) and per fold the chosen candidate's index with every
    candidate's validation score."""
    cfg, candidates = plan.cfg, plan.candidates
    searching = len(candidates) > 1
    tested: list[FoldResult] = []
    per_fold: dict[str, dict[str, Any]] = {}
    choices: dict[str, tuple[int, list[float]]] = {}
    trained = iter(selections)
    for fold in plan.folds:
        fold_data = plan.fold_data[fold.name]
        rows = fold_data.fold_indices(fold)
        by_candidate = [[next(trained) for _ in cfg.seeds] for _ in candidates]
        scores = [float(np.mean([s.score for s in members])) for members in by_candidate]
        chosen = int(np.argmax(scores))  # the first of equal scores
        choices[fold.name] = (chosen, scores)
        if searching:
            per_fold[fold.name] = {
                "chosen": chosen,
                "candidate": candidates[chosen].values,
                f"validation_{candidates[chosen].train.select}": scores,
                "seconds": [sum(s.seconds for s in members) for members in by_candidate],
            }
            logger.info(
                "fold %s: search chose %s (validation %s %.4f, mean over seeds; candidates: %s)",
                fold.name,
                candidates[chosen].values,
                candidates[chosen].train.select,
                scores[chosen],
                ", ".join(f"{v:.4f}" for v in scores),
            )
        extra = {key: (variant, variant.index_of(fold.test)) for key, variant in plan.robust.get(fold.name, {}).items()}
        for selection in by_candidate[chosen]:
            result = test_member(selection, fold_data, rows, extra_tests=extra, candidate=candidates[chosen].values)
            tested.append(result)
            logger.info(
                "fold %s seed %d: test UA %.2f WA %.2f macro-F1 %.2f",
                fold.name,
                result.seed,
                100 * result.test["ua"],
                100 * result.test["wa"],
                100 * result.test["macro_f1"],
            )
    order = {seed: i for i, seed in enumerate(cfg.seeds)}
    tested.sort(key=lambda r: order[r.seed])  # stable: folds stay in protocol order within a seed
    if not searching:
        return tested, {}, choices
    seconds = [sum(fold["seconds"][i] for fold in per_fold.values()) for i in range(len(candidates))]
    return (
        tested,
        {
            "space": cfg.search,
            "select": candidates[0].train.select,
            "candidates": [c.values for c in candidates],
            "folds": per_fold,
            "seconds_per_candidate": seconds,
        },
        choices,
    )


def _write_models(
    plan: _Plan,
    models_dir: Path,
    results: list[FoldResult],
    choices: dict[str, tuple[int, list[float]]],
    search: dict[str, Any],
) -> None:
    """Every tested member's weights, the final model with ``--final``, and ``index.json`` (last)."""
    cfg, data = plan.cfg, plan.data
    engine = HEADS[cfg.fusion].engine
    members = []
    for result in results:
        candidate = plan.candidates[choices[result.fold][0]]
        name = member_name(result.fold, result.seed)
        fold_data = plan.fold_data[result.fold]
        record = member_record(
            name=name,
            fold=result.fold,
            seed=result.seed,
            file=save_member(models_dir, name, result.predictor),
            engine=engine,
            head_options=candidate.head_options,
            train=candidate.train,
            candidate=candidate.values,
            best_epoch=result.best_epoch,
            rows=len(fold_data.fold_indices(plan.folds_by_name[result.fold])["train"]),
        )
        if cfg.per_fold():
            record["inputs"] = {m: input_record(d) for m, d in fold_data.modalities.items()}
        members.append(record)
    final = None
    if cfg.final:
        recipe = choose_recipe(
            results, {f: c for f, (c, _) in choices.items()}, {f: s for f, (_, s) in choices.items()}, cfg.seeds[0]
        )
        rows = labelled_rows(data, [data.fold_indices(fold) for fold in plan.folds])
        candidate = plan.candidates[recipe.candidate]
        predictor = train_final(
            data, rows, fusion=cfg.fusion, head_options=candidate.head_options, cfg=candidate.train, recipe=recipe
        )
        name = member_name(FINAL, recipe.seed)
        final = {
            **member_record(
                name=name,
                fold=FINAL,
                seed=recipe.seed,
                file=save_member(models_dir, name, predictor),
                engine=engine,
                head_options=candidate.head_options,
                train=candidate.train,
                candidate=candidate.values,
                best_epoch=recipe.epochs,
                rows=len(rows),
            ),
            "recipe": recipe.to_dict(),
        }
    write_index(
        models_dir,
        {
            "fusion": cfg.fusion,
            "classes": list(data.classes),
            "label_set": plan.label_name,
            "protocol": cfg.protocol,
            "inputs": {m: input_record(d) for m, d in data.modalities.items()},
            "members": members,
            "final": final,
            "search": bool(search),
        },
    )


def pooled_metrics(results: list[FoldResult], classes: tuple[str, ...]) -> dict[str, Any]:
    """Metrics of all folds' test predictions pooled into one set, per seed (from the summed confusion
    matrices), and their mean ± std over seeds. Leave-one-speaker-out folds often lack a class, which
    drags per-fold macro-F1 down; the pooled set has every class."""
    per_seed = []
    for seed in dict.fromkeys(r.seed for r in results):
        confusion = np.sum([r.test["confusion"] for r in results if r.seed == seed], axis=0)
        metrics = metrics_from_confusion(confusion, classes)
        per_seed.append({"seed": seed, **{k: metrics[k] for k in ("ua", "wa", "macro_f1", "weighted_f1", "n")}})
    return {**aggregate(per_seed), "per_seed": per_seed}


def seed_ensembles(results: list[FoldResult], classes: tuple[str, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per fold, the mean of the seed members' test probabilities: its metrics per fold, mean ± std over
    folds and pooled over folds, and one prediction row per test utterance."""
    by_fold: dict[str, list[FoldResult]] = {}
    for result in results:
        by_fold.setdefault(result.fold, []).append(result)
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for fold, members in by_fold.items():
        ids = [p["id"] for p in members[0].predictions]
        if any([p["id"] for p in m.predictions] != ids for m in members):
            raise RuntimeError(f"fold {fold}: seed members were tested on different rows")
        outputs = [_kept_test_outputs(m) for m in members]
        probs = np.mean([member_probabilities for member_probabilities, _ in outputs], axis=0)
        labels = outputs[0][1]
        runs.append(
            {
                "fold": fold,
                "seeds": [m.seed for m in members],
                "test": compute_metrics(labels, probs.argmax(axis=1), classes),
            }
        )
        rows += [
            {
                "fold": fold,
                "seeds": " ".join(str(m.seed) for m in members),
                "id": uid,
                "true": classes[int(label)],
                "pred": classes[int(p.argmax())],
                **{f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)},
            }
            for uid, label, p in zip(ids, labels, probs, strict=True)
        ]
    pooled = metrics_from_confusion(np.sum([r["test"]["confusion"] for r in runs], axis=0), classes)
    return {
        "runs": runs,
        "test": aggregate([r["test"] for r in runs]),
        "test_pooled": {k: pooled[k] for k in ("ua", "wa", "macro_f1", "weighted_f1", "n")},
    }, rows


def _kept_test_outputs(result: FoldResult) -> tuple[np.ndarray, np.ndarray]:
    """The (n_test, C) test probabilities and (n_test,) true class indices a member kept in memory."""
    if result.probabilities is None or result.test_labels is None:
        raise RuntimeError(
            f"fold {result.fold} seed {result.seed}: the member kept no test probabilities; a seed ensemble "
            "needs the members as trained in this process"
        )
    return result.probabilities, result.test_labels


def _summed_confusion(results: list[FoldResult], n_classes: int) -> list[list[int]]:
    total = np.zeros((n_classes, n_classes), dtype=np.int64)
    for result in results:
        total += np.asarray(result.test["confusion"], dtype=np.int64)
    return total.tolist()


def _write_json(path: Path, record: dict[str, Any]) -> None:
    write_json(path, record, indent=1, default=str)


def _write_yaml(path: Path, record: dict[str, Any]) -> None:
    import yaml

    write_text(path, yaml.safe_dump(json.loads(json.dumps(record, default=str)), sort_keys=False))


def _write_predictions(path: Path, results: list[FoldResult], classes: tuple[str, ...]) -> None:
    _write_csv(
        path,
        [row for result in results for row in result.predictions],
        ["fold", "seed", "id", "true", "pred", *[f"p_{c}" for c in classes]],
    )


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with atomic_open(path, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
