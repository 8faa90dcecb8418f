"""``ser protocol``: list the protocol presets and show the folds a preset makes of a manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ser.commands.common import choices_help, default_of, parse_options, user_errors
from ser.manifests.protocols import PROTOCOLS, ValidationBy, ValidationRule

if TYPE_CHECKING:
    from ser.manifests.labels import LabelSet
    from ser.manifests.protocols import Fold, FoldSet

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "List the protocol presets and show the folds they make.\n\n"
        "An evaluation protocol splits a manifest into folds of (train, validation, test), with validation "
        "carved from training speakers only.\n\nExample: ser protocol show speaker-loso rav.jsonl"
    ),
)


@app.command("list")
def list_protocols() -> None:
    """List the protocol presets, their options and defaults.

    One line per preset: name, description, and the -O options it takes with their defaults.
    """
    for name, preset in PROTOCOLS.items():
        options = ", ".join(f"{key}={value if value != '' else '(none)'}" for key, value in preset.options.items())
        typer.echo(f"{name:22s} {preset.description}" + (f" [-O {options}]" if options else ""))


OPTION_HELP = "Preset option KEY=VALUE: " + "; ".join(
    f"{', '.join(f'{key} (default {value})' for key, value in preset.options.items())} for {name}"
    for name, preset in PROTOCOLS.items()
    if preset.options
)


def _speakers(fold_set: FoldSet, ids: tuple[str, ...]) -> set[str]:
    return {s for s in (fold_set.utterances[i].speaker for i in ids) if s is not None}


def _hours(fold_set: FoldSet, ids: tuple[str, ...]) -> float:
    return sum(fold_set.utterances[i].duration or 0.0 for i in ids) / 3600


def fold_table(fold_set: FoldSet) -> list[str]:
    """One line per fold: sizes, speakers and hours of each split."""
    width = max([14, *(len(fold.name) for fold in fold_set.folds)])
    lines = [
        f"{'fold':{width}s} {'train':>7s} {'spk':>4s} {'val':>6s} {'spk':>4s} {'test':>6s} {'spk':>4s} "
        f"{'hours train/val/test':>22s}"
    ]
    for fold in fold_set.folds:
        sizes = [(len(ids), len(_speakers(fold_set, ids))) for ids in (fold.train, fold.validation, fold.test)]
        hours = "/".join(f"{_hours(fold_set, ids):.2f}" for ids in (fold.train, fold.validation, fold.test))
        lines.append(
            f"{fold.name:{width}s} {sizes[0][0]:7d} {sizes[0][1]:4d} {sizes[1][0]:6d} {sizes[1][1]:4d} "
            f"{sizes[2][0]:6d} {sizes[2][1]:4d} {hours:>22s}"
        )
    return lines


def label_table(fold_set: FoldSet, fold: Fold, label_set: LabelSet | None) -> list[str]:
    """Per-label sizes of one fold's splits, plus the speakers of each split."""

    def label_of(uid: str) -> str:
        utt = fold_set.utterances[uid]
        return (label_set.class_of(utt) if label_set else utt.label) or "<none>"

    counts = {name: Counter(label_of(i) for i in ids) for name, ids in fold.split_ids().items()}
    labels = list(label_set.classes) if label_set else sorted(set().union(*counts.values()))
    lines = [f"fold {fold.name}: sizes per label", f"{'label':10s} {'train':>7s} {'val':>6s} {'test':>6s}"]
    lines += [
        f"{label:10s} {counts['train'][label]:7d} {counts['validation'][label]:6d} {counts['test'][label]:6d}"
        for label in labels
    ]
    for name, ids in fold.split_ids().items():
        speakers = sorted(_speakers(fold_set, ids))
        shown = ", ".join(speakers[:12]) + (f" ... ({len(speakers)})" if len(speakers) > 12 else "")
        lines.append(f"{name} speakers: {shown or '-'}")
    return lines


@app.command("show")
def show(
    protocol: str = typer.Argument(..., help=f"Preset name: {choices_help(PROTOCOLS)} (see `ser protocol list`)."),
    manifest: Path = typer.Argument(..., help="Manifest file."),
    label_set: str | None = typer.Option(
        None,
        "--label-set",
        "-l",
        help=(
            "Label set to filter and count with; default: the manifest's, else the corpus default "
            "(iemocap4, ravdess8, meld7, ...)."
        ),
    ),
    all_labels: bool = typer.Option(False, help="Use every row and raw labels (no label set)."),
    val_fraction: float = typer.Option(
        default_of(ValidationRule, "fraction"), help="Share of each fold's training pool used for validation."
    ),
    val_by: ValidationBy = typer.Option(
        default_of(ValidationRule, "by"),
        help="speaker: hold out whole training speakers; utterance: a "
        "class-stratified random share of training utterances.",
    ),
    seed: int = typer.Option(
        default_of(ValidationRule, "seed"), help="Seed of the validation choice (and of speaker-kfold's dealing)."
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-O",
        help=OPTION_HELP + ".",
    ),
    fold: str | None = typer.Option(None, help="Fold whose per-label table is printed (default: the first)."),
    save: Path | None = typer.Option(
        None, "--save", help="Write the card and every fold's id lists to this JSON file."
    ),
) -> None:
    """Show the folds a protocol makes of a manifest.

    Prints the fold table of PROTOCOL applied to MANIFEST (sizes, speakers and hours per split), then
    the per-label sizes and the speakers of one fold.
    """
    with user_errors():
        from ser.manifests.labels import choose_label_set
        from ser.manifests.protocols import make_folds, save_folds
        from ser.manifests.schema import read_manifest

        loaded = read_manifest(manifest)
        chosen = choose_label_set(loaded, label_set, all_labels=all_labels).label_set
        try:
            rule = ValidationRule(fraction=val_fraction, by=val_by, seed=seed)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        fold_set = make_folds(loaded, protocol, label_set=chosen, rule=rule, options=parse_options(option))
        shown_fold = fold_set.fold(fold) if fold else fold_set.folds[0]
        if save is not None:
            save_folds(fold_set, save)
    card = fold_set.card
    typer.echo(
        f"protocol {card.protocol} on {manifest} ({card.corpus}, label set {card.label_set or 'none'}, "
        f"{card.n_utterances} utterances, {len(card.folds)} folds, seed {card.seed})"
    )
    if fold_set.dropped_labels:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(fold_set.dropped_labels.items()))
        typer.echo(f"dropped by the label set: {sum(fold_set.dropped_labels.values())} ({dropped})")
    typer.echo(f"validation: {card.validation}; speaker-independent: {'yes' if card.speaker_independent else 'NO'}")
    for line in fold_table(fold_set):
        typer.echo(line)
    for name, cell in card.cells.items():
        typer.echo(f"{name}: train on {', '.join(cell['train'])}, test on {cell['test']}")
    typer.echo("")
    for line in label_table(fold_set, shown_fold, chosen):
        typer.echo(line)
    if save is not None:
        typer.echo(f"folds written to {save}")
