"""``ser finetune``: adapt an upstream per protocol fold, then (optionally) extract and fit every fold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from ser.adapt.config import FAMILIES, FinetuneConfig
from ser.commands.common import parse_options, user_errors
from ser.extract.registry import extractor_family  # noqa: TID253 (literal registry, no heavy imports)
from ser.manifests.protocols import protocol_options
from ser.options import coerce
from ser.views import VIEW_HELP

if TYPE_CHECKING:
    from ser.adapt.train import FoldAdaptation
    from ser.extract.runner import RunReport


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
        f"YAML names no audio input ({VIEW_HELP}), e.g. layer=weighted or stat=mean,layer=12.",
    ),
) -> None:
    """Adapt an upstream model to each protocol fold.

    Adapts the upstream without the folds' test data: per fold, train on its training speakers only
    and early-stop on its validation speakers. The checkpoint records which fold and which utterances
    shaped it, `ser extract --checkpoint` carries that into the cache and `ser fit` refuses to test a
    fold on a cache adapted with its test data. `--fold all --extract --fit-config fit.yaml` runs the
    whole per-fold loop in one command.
    """
    with user_errors():
        from ser.recipes.finetune import choose_preset, run_finetune

        chosen = choose_preset(model, preset)
        cfg = FinetuneConfig(
            family=model,
            model=checkpoint or extractor_family(model).presets[chosen],
            manifest=str(manifest),
            protocol=protocol,
            label_set=label_set,
            protocol_options=protocol_options(protocol, parse_options(option)),
            val_fraction=val_fraction,
            val_by=val_by,
            split_seed=split_seed,
            mode=mode,
            epochs=epochs,
            patience=patience,
            unfreeze=None if unfreeze is None else coerce(unfreeze, int | Literal["all"], "--unfreeze"),
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            crop_seconds=crop_seconds,
            temperature=temperature,
            seed=seed,
            device=device,
            num_workers=num_workers,
        )
        result = run_finetune(
            cfg,
            out,
            folds=None if fold == "all" else [name.strip() for name in fold.split(",") if name.strip()],
            preset=chosen,
            extract=extract,
            seq=seq,
            fit_config=fit_config,
            fit_view=fit_view,
            hooks=_Printer(cfg.mode),
        )
    if result.fit_dir is not None:
        from ser.commands.fit import report

        report(result.fit_dir)


class _Printer:
    """Prints each fold's checkpoint and store as the recipe finishes them (``FinetuneHooks``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def adapted(self, adaptation: FoldAdaptation) -> None:
        state = (
            "reused"
            if adaptation.skipped
            else f"best epoch {adaptation.best_epoch}, validation {adaptation.best_score:.4f}"
        )
        typer.echo(
            f"fold {adaptation.fold}: {self.mode} checkpoint {adaptation.checkpoint} ({state}; "
            f"{len(adaptation.trainable)} trainable tensors)"
        )

    def extracted(self, fold: str, report: RunReport) -> None:
        state = "already complete" if report.already_complete else f"{report.extracted} rows in {report.seconds:.0f} s"
        typer.echo(f"  features {report.output} ({state}, {len(report.rejected)} rejected)")
