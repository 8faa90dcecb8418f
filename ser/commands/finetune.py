"""``ser finetune``: adapt an upstream per protocol fold, then (optionally) extract and fit every fold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ser.commands.common import parse_options, user_errors
from ser.extract.registry import PRESETS  # noqa: TID253 (literal registry, no heavy imports)

if TYPE_CHECKING:
    from ser.adapt.config import FinetuneConfig

FAMILIES = ("hubert", "wav2vec2", "wavlm")


def finetune(
    model: str = typer.Option(..., "--model", help=f"Upstream family: {', '.join(FAMILIES)}."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest (from `ser manifest`)."),
    protocol: str = typer.Option(..., "--protocol", "-p", help="Protocol preset (`ser protocol list`)."),
    fold: str = typer.Option(..., "--fold", "-f", help="Fold name, several separated by commas, or all."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder: OUT/<fold>/checkpoint (and features.h5 with --extract)."
    ),
    preset: str | None = typer.Option(None, help="Preset of the family (default: the first; see `ser extractors`)."),
    checkpoint: str | None = typer.Option(
        None,
        help="Starting weights: a local save_pretrained folder or hub id instead of the preset's (needed offline).",
    ),
    mode: str = typer.Option(
        "supervised",
        help="supervised: top-k layers + a linear head, cross-entropy, early "
        "stopping on validation UA. contrastive: FleSER's label-free adaptation (two random "
        "crops per utterance, NT-Xent), early stopping on validation loss.",
    ),
    unfreeze: str | None = typer.Option(
        None,
        help="Top transformer layers to train, or all (default: 2 for "
        "supervised, all for contrastive). The CNN feature encoder stays frozen.",
    ),
    epochs: int = typer.Option(10, help="Most epochs per fold."),
    patience: int = typer.Option(3, help="Stop after this many epochs without a better validation score (0: never)."),
    batch_size: int = typer.Option(8, help="Crops per batch (contrastive: at least 2, the others are negatives)."),
    lr: float = typer.Option(5e-5, help="Learning rate of the unfrozen upstream layers."),
    head_lr: float = typer.Option(1e-3, help="Learning rate of the classification / projection head."),
    crop_seconds: float | None = typer.Option(
        None, help="Training crop length (default 4.0 supervised, 1.0 contrastive); shorter clips are tiled."
    ),
    temperature: float = typer.Option(0.07, help="NT-Xent temperature (contrastive)."),
    label_set: str | None = typer.Option(
        None, "--label-set", "-l", help="Label set (default: the manifest's, else the corpus default)."
    ),
    val_fraction: float = typer.Option(0.2, help="Validation share of the training pool (as `ser fit`)."),
    val_by: str = typer.Option("speaker", help="speaker (held-out training speakers) or utterance (stratified)."),
    split_seed: int = typer.Option(0, help="Seed of the validation carving; the later fit must use the same."),
    option: list[str] = typer.Option([], "--option", "-O", help="Protocol option KEY=VALUE (e.g. k=10)."),
    seed: int = typer.Option(0, help="Training seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    num_workers: int = typer.Option(2, help="Audio decoding processes."),
    extract: bool = typer.Option(
        False,
        "--extract",
        help="After each fold, extract the whole manifest with its "
        "checkpoint into OUT/<fold>/features.h5 (resumable; skipped when complete).",
    ),
    seq: str = typer.Option("none", help="With --extract: layers also stored as sequences (as `ser extract --seq`)."),
    fit_config: Path | None = typer.Option(
        None,
        "--fit-config",
        help="With --extract: then run `ser fit` with this "
        "YAML (fusion, head, train, text, ...) over all the folds, each tested "
        "on the features of its own checkpoint.",
    ),
    fit_view: str = typer.Option(
        "layer=weighted",
        help="View of the per-fold features for --fit-config when its "
        "YAML names no audio input, e.g. layer=weighted or stat=mean,layer=12.",
    ),
) -> None:
    """Adapt an upstream to protocol folds without their test data: per fold, train on its training
    speakers only and early-stop on its validation speakers; the checkpoint records which fold and which
    utterances shaped it, `ser extract --checkpoint` carries that into the cache and `ser fit` refuses
    to test a fold on a cache adapted with its test data. `--fold all --extract --fit-config fit.yaml`
    runs the whole per-fold loop in one command."""
    with user_errors():
        from ser.adapt.config import FinetuneConfig
        from ser.errors import UserError

        if model not in FAMILIES:
            raise UserError(f"--model must be one of {', '.join(FAMILIES)}, not {model!r}")
        if fit_config is not None and not extract:
            raise UserError("--fit-config fits the per-fold features: add --extract")
        chosen = preset or next(iter(PRESETS[model]))
        if chosen not in PRESETS[model]:
            raise UserError(f"unknown preset {chosen!r} of {model}; choose from {', '.join(PRESETS[model])}")
        layers = unfreeze if unfreeze in (None, "all") else _int(unfreeze, "--unfreeze")
        cfg = FinetuneConfig(
            family=model,
            model=checkpoint or PRESETS[model][chosen],
            manifest=str(manifest),
            protocol=protocol,
            label_set=label_set,
            protocol_options=parse_options(option),
            val_fraction=val_fraction,
            val_by=val_by,
            split_seed=split_seed,
            mode=mode,
            epochs=epochs,
            patience=patience,
            unfreeze=layers,
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            crop_seconds=crop_seconds,
            temperature=temperature,
            seed=seed,
            device=device,
            num_workers=num_workers,
        )
        fit_dir = adapt_folds(
            cfg, fold, out, preset=chosen, extract=extract, seq=seq, fit_config=fit_config, fit_view=fit_view
        )
    if fit_dir is not None:
        from ser.commands.fit import report

        report(fit_dir)


def adapt_folds(
    cfg: FinetuneConfig,
    folds: str,
    out: Path,
    *,
    preset: str,
    extract: bool,
    seq: str,
    fit_config: Path | None,
    fit_view: str,
) -> Path | None:
    """The per-fold loop: adapt (and extract with) each fold's checkpoint, then one fit over all the
    folds, each tested on its own features. Returns the fit's run directory, if it ran one."""
    from ser.adapt.train import adapt_fold, fold_set_of

    _, _, fold_set = fold_set_of(cfg)
    names = [f.name for f in fold_set.folds] if folds == "all" else [n.strip() for n in folds.split(",") if n.strip()]
    for name in names:
        fold_set.fold(name)  # unknown folds are refused before any training
    for name in names:
        result = adapt_fold(cfg, name, out)
        state = "reused" if result.skipped else f"best epoch {result.best_epoch}, validation {result.best_score:.4f}"
        typer.echo(
            f"fold {name}: {cfg.mode} checkpoint {result.checkpoint} ({state}; "
            f"{len(result.trainable)} trainable tensors)"
        )
        if extract:
            _extract_fold(cfg, preset, result.checkpoint, out / name / "features.h5", seq)
    if fit_config is None:
        return None
    return _fit_folds(cfg, names, out, fit_config, fit_view)


def _extract_fold(cfg: FinetuneConfig, preset: str, checkpoint: Path, store: Path, seq: str) -> None:
    import gc

    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    extractor = build_extractor(cfg.family, preset, checkpoint=str(checkpoint), device=cfg.device)
    result = run_extraction(
        cfg.manifest, extractor, store, RunOptions(seq=seq, num_workers=cfg.num_workers, progress=False)
    )
    state = "already complete" if result.already_complete else f"{result.extracted} rows in {result.seconds:.0f} s"
    typer.echo(f"  features {store} ({state}, {len(result.rejected)} rejected)")
    del extractor
    gc.collect()


FIXED_BY_FINETUNE = ("manifest", "protocol", "label_set", "protocol_options", "val_fraction", "val_by", "split_seed")
"""Fit keys that must be the fine-tuning's: the same folds and the same validation speakers."""


def _fit_folds(cfg: FinetuneConfig, names: list[str], out: Path, fit_config: Path, fit_view: str) -> Path:
    from ser.errors import UserError
    from ser.fusion.config import read_fit_record
    from ser.fusion.run import config_from_dict, run_fit

    record = read_fit_record(fit_config)
    ours = {key: getattr(cfg, key) for key in FIXED_BY_FINETUNE}
    clashes = sorted(k for k in FIXED_BY_FINETUNE if k in record and record[k] != ours[k])
    if clashes:
        raise UserError(
            f"{fit_config} sets {', '.join(clashes)} differently from the fine-tuning; leave them out "
            "(the fit must use the folds and validation speakers the checkpoints were selected on)"
        )
    record = {**record, **ours, "folds": names}
    record.setdefault("audio", f"{out}/{{fold}}/features.h5:{fit_view}")
    if "{fold}" not in str(record["audio"]):
        raise UserError(
            f"{fit_config}: audio {record['audio']!r} names one store for every fold; with fine-tuned "
            "checkpoints each fold needs its own (leave audio out, or put {fold} in its path)"
        )
    return run_fit(config_from_dict(record))


def _int(text: str, name: str) -> int:
    from ser.errors import UserError

    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} takes a number of layers or all, not {text!r}") from None
