"""``ser fit`` (train a fusion head under a protocol) and ``ser fusion list``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ser.commands.common import choices_help, default_of, user_errors
from ser.fusion.config import ENGINES, FitConfig, TrainConfig  # noqa: TID253 (torch-free config, no heavy imports)
from ser.fusion.heads import HEADS  # noqa: TID253 (literal registry, no heavy imports)
from ser.fusion.recipes import DEFAULT_RECIPE, RECIPES  # noqa: TID253 (torch-free records)
from ser.manifests.protocols import PROTOCOLS

fusion_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "List the fusion heads and show their recipes.\n\n"
        "A head maps the cached features of one or more modalities to emotion classes; "
        "`ser fit --fusion NAME` trains one."
    ),
)

VIEW_HELP = (
    "STORE[:stat=NAME,layer=last|avg|weighted|N] for pooled vectors (layer=weighted learns softmax layer "
    "weights), or STORE:seq=LAYER for padded sequences."
)


@fusion_app.command("list")
def list_heads(
    recipes: bool = typer.Option(False, "--recipes", help="Also print the train values of each recipe."),
) -> None:
    """List the fusion heads with their source papers.

    One line per head: name, a one-line description and its source; --recipes adds each recipe's values.
    """
    from ser.fusion.recipes import format_value

    for name, info in HEADS.items():
        typer.echo(f"{name:18s} {info.description}  [{info.source}]")
        if recipes:
            for recipe_name, recipe in info.recipes.items():
                values = ", ".join(f"{k}={format_value(v)}" for k, v in recipe.train.items()) or "the train defaults"
                typer.echo(f"{'':18s} {recipe_name}: {values}")


@fusion_app.command("show")
def show_head(
    name: str = typer.Argument(..., help=f"Head name: {choices_help(HEADS)}."),
) -> None:
    """Show a head's recipes and its fidelity table.

    The recipes (ser, paper: every train.*, head.* and input value they set) and the fidelity table:
    aspect | original (repository, file:line) | paper | ser | why they differ.
    """
    with user_errors():
        from ser.fusion.heads import head_info
        from ser.fusion.recipe_text import fidelity_lines, recipe_lines

        info = head_info(name)
        typer.echo(f"{name}: {info.description}  [{info.source}]")
        for recipe_name in info.recipes:
            typer.echo("")
            for line in recipe_lines(name, recipe_name):
                typer.echo(line)
        if info.fidelity:
            typer.echo("")
            typer.echo("fidelity (aspect | original | paper | ser | why):")
            for line in fidelity_lines(name):
                typer.echo(line)


def split_list(text: str | None, annotation: Any, flag: str) -> list[Any] | None:
    """``--seeds 0,1,2`` / ``--folds Ses01,Ses02`` read by the option grammar; ``all`` (or no flag): None."""
    from ser.errors import UserError
    from ser.options import OptionError, coerce

    if text is None or text == "all":
        return None
    try:
        return coerce(text, annotation, flag)
    except OptionError:
        what = "whole numbers" if annotation == list[int] else "names"
        raise UserError(f"{flag} takes comma-separated {what}, not {text!r}") from None


LABEL_SET_OPTION = typer.Option(
    None, "--label-set", "-l", help="Label set (default: the manifest's, else the corpus default)."
)
FOLDS_OPTION = typer.Option(None, help="Folds to run: all (default) or names, e.g. Ses01,Ses02.")
SEEDS_OPTION = typer.Option(
    None, help=f"Training seeds, e.g. 0,1,2 (default {','.join(map(str, default_of(FitConfig, 'seeds')))})."
)
"""Options ``ser fit`` shares with ``ser probe``."""


def fit(
    fusion: str | None = typer.Option(
        None, "--fusion", "-f", help=f"Head name: {choices_help(HEADS)} (`ser fusion list`)."
    ),
    manifest: Path | None = typer.Option(None, "--manifest", "-m", help="Manifest the caches were extracted from."),
    protocol: str | None = typer.Option(
        None, "--protocol", "-p", help=f"Protocol preset: {choices_help(PROTOCOLS)} (`ser protocol list`)."
    ),
    audio: str | None = typer.Option(None, "--audio", help=f"Audio features: {VIEW_HELP}"),
    text: str | None = typer.Option(None, "--text", help=f"Text features: {VIEW_HELP}"),
    mocap: str | None = typer.Option(None, "--mocap", help=f"Motion-capture features: {VIEW_HELP}"),
    robustness: list[str] = typer.Option(
        [],
        "--robustness",
        help="Corrupted copy of the audio store (`ser extract "
        "--corrupt`), repeatable: each fold's test rows are evaluated once more on "
        "it with the --audio view; `ser report` tabulates UA against SNR.",
    ),
    label_set: str | None = LABEL_SET_OPTION,
    folds: str | None = FOLDS_OPTION,
    seeds: str | None = SEEDS_OPTION,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML file with any FitConfig keys (fusion, "
        "manifest, protocol, audio, text, head: {...}, train: {...}, ...).",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override KEY=VALUE (dotted: train.lr=1e-4, head.fusion=gmu); "
        "precedence: defaults < the head's paper training preset < --config YAML < "
        "flags < --set.",
    ),
    search: list[str] = typer.Option(
        [],
        "--search",
        help="Model selection on validation, repeatable: KEY=V1,V2 "
        "with KEY train.NAME or head.NAME (e.g. --search train.lr=1e-4,1e-3 --search "
        "head.dropout=0.2,0.5; brackets for values holding commas: "
        "head.hidden=[[256],[512,256]]). Every combination trains per fold and seed; "
        "per fold the best mean validation metric over seeds wins and only it is "
        "tested.",
    ),
    ensemble: bool = typer.Option(
        default_of(FitConfig, "ensemble"),
        "--ensemble",
        help="Also report each fold's seed ensemble (mean of the "
        "seed members' class probabilities; needs two or more --seeds).",
    ),
    models: bool = typer.Option(
        default_of(FitConfig, "save_models"),
        "--models/--no-models",
        help="Save every fold and seed member's weights in "
        "models/ for `ser predict` (--no-models saves disk in large grids; the numbers and "
        "the run directory's name do not change).",
    ),
    final: bool = typer.Option(
        default_of(FitConfig, "final"),
        "--final",
        help="Also train one deployment model on every labelled row "
        "(train + validation of every fold) for the epoch count the folds chose on "
        "validation; `ser predict` uses it by default.",
    ),
    recipe: str | None = typer.Option(
        None,
        "--recipe",
        "-r",
        help=f"{choices_help(RECIPES)} (default {DEFAULT_RECIPE}): ser trains every head the same way for fair "
        "comparisons (batch 32 or the paper's if larger, recommended views, z-scored inputs, best validation "
        "UA); paper runs the original experiment (its inputs, batch, optimisers, schedules, loss scale, "
        "augmentation, checkpoint rule). `ser fusion show HEAD` prints both; explicit values override the "
        "recipe and are logged as departures.",
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help=f"{choices_help(ENGINES)}; sets train.engine (default {default_of(TrainConfig, 'engine')}: "
        "stacked where it was measured to pay). stacked: the fit's members (folds x seeds x search "
        "candidates) train as one model with a member axis; sequential: one after the other. Same numbers "
        "without dropout.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help=f"Parent folder of run directories (default {default_of(FitConfig, 'out')}/)."
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="No progress on stderr (by default a bar counts members x epochs, or grid points for classic "
        "heads, and each fold's validation line prints as it finishes); the results table still prints.",
    ),
) -> None:
    """Train a fusion head on cached features under a protocol.

    Trains the head (or the classic logreg / svm baselines) for every fold x seed, with validation from
    training speakers only and each test split touched once. An input without a view reads the store's
    recommended view (`ser cache info`), or the recipe's. Training starts from the head's recipe
    (--recipe, printed first).

    Writes config.yaml, metrics.json, predictions.csv, confusion.png, the model files (models/: one per
    fold and seed, used by `ser predict`) and train.log (nothing when the inputs or options are refused).
    """
    with user_errors():
        from ser.fusion.config import parse_search

        flags = {
            "fusion": fusion,
            "manifest": str(manifest) if manifest else None,
            "protocol": protocol,
            "audio": audio,
            "text": text,
            "mocap": mocap,
            "label_set": label_set,
            "recipe": recipe,
            "folds": split_list(folds, list[str], "--folds"),
            "seeds": split_list(seeds, list[int], "--seeds"),
            "robustness": robustness or None,
            "out": str(out) if out else None,
            "search": parse_search(search) if search else None,
            # a flag left at its default leaves the YAML's value (or the default) in place
            "ensemble": ensemble if ensemble != default_of(FitConfig, "ensemble") else None,
            "final": final if final != default_of(FitConfig, "final") else None,
            "save_models": models if models != default_of(FitConfig, "save_models") else None,
        }
        fit_config = build_fit_config(config, flags, engine, set_)
        with fit_progress(quiet, f"ser fit: {fit_config.fusion}, checking the inputs and reading the stores"):
            from ser.fusion.run import run_fit  # torch: imported after the first line is out

            run_dir = run_fit(fit_config, announce=_print_recipe)
    report(run_dir)


def build_fit_config(config: Path | None, flags: dict[str, Any], engine: str | None, set_: list[str]) -> FitConfig:
    """The checked FitConfig of ``ser fit``-style options: the ``--config`` YAML, then the ``flags`` that are
    not None (FitConfig keys), ``--engine`` as ``train.engine``, then ``--set``; a bad value is refused in one
    line, before any progress is printed."""
    from ser.fusion.config import apply_overrides, config_from_dict, read_fit_record

    record: dict[str, Any] = read_fit_record(config) if config is not None else {}
    record.update({k: v for k, v in flags.items() if v is not None})
    if engine is not None:
        record["train"] = {**(record.get("train") or {}), "engine": engine}
    fit_config = config_from_dict(apply_overrides(record, set_))
    fit_config.check()
    return fit_config


@contextmanager
def fit_progress(quiet: bool, first_line: str) -> Iterator[None]:
    """Progress of the fits run in the block on stderr (``first_line`` at once), or nothing when ``quiet``."""
    if quiet:
        yield
        return
    from ser.fusion.progress import ConsoleProgress, reporting

    typer.echo(first_line, err=True)
    with reporting(ConsoleProgress()):
        yield


def _print_recipe(cfg: FitConfig, departures: list[str]) -> None:
    """The recipe the fit starts from, and where the fit departs from it (printed once the fit is checked)."""
    from ser.fusion.recipe_text import recipe_lines

    for line in recipe_lines(cfg.fusion, cfg.recipe):
        typer.echo(line)
    for departure in departures:
        typer.echo(f"  departure: {departure}")


def report(run_dir: Path) -> None:
    """Print per-fold test metrics and the mean ± std from a run directory's metrics.json."""
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    card = metrics["protocol_card"]
    rejected = int(card.get("dropped_rejected_at_extraction") or 0)
    used = f"{card['n_utterances'] - rejected} utterances" + (
        f" ({rejected} more rejected at extraction, left out)" if rejected else ""
    )
    typer.echo(
        f"{metrics['fusion']} ({metrics.get('recipe', 'ser')} recipe) on {card['corpus']} ({card['protocol']}, "
        f"label set {metrics['label_set']}, "
        f"{used}; validation: {card['validation']})"
    )
    typer.echo(f"{'fold':12s} {'seed':>4s} {'UA':>6s} {'WA':>6s} {'mF1':>6s} {'wF1':>6s} {'epoch':>5s}")
    for run in metrics["runs"]:
        t = run["test"]
        epoch = str(run["best_epoch"]) if run.get("epochs_run") else "-"  # classic heads have no epochs
        typer.echo(
            f"{run['fold']:12s} {run['seed']:4d} {100 * t['ua']:6.2f} {100 * t['wa']:6.2f} "
            f"{100 * t['macro_f1']:6.2f} {100 * t['weighted_f1']:6.2f} {epoch:>5s}"
        )
    for fold, choice in (metrics.get("search") or {}).get("folds", {}).items():
        typer.echo(f"search, fold {fold}: chose {choice['candidate']}")
    typer.echo(f"mean ± std over {metrics.get('aggregated_over', 'folds and seeds')}: " + _line(metrics["test"]))
    if "test_pooled" in metrics:
        pooled = metrics["test_pooled"]
        over = " (mean ± std over seeds)" if len(pooled["ua"].get("values", ())) > 1 else ""
        typer.echo(f"all folds' test predictions pooled{over}: " + _line(pooled))
    if "ensemble" in metrics:
        ensemble = metrics["ensemble"]
        typer.echo("seed ensemble, mean ± std over folds: " + _line(ensemble["test"]))
        typer.echo(
            "seed ensemble, all folds pooled: "
            + ", ".join(f"{name} {100 * ensemble['test_pooled'][key]:.2f}" for key, name in METRIC_NAMES)
        )
    typer.echo(f"run directory: {run_dir}")


METRIC_NAMES = (("ua", "UA"), ("wa", "WA"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted-F1"))


def _line(summary: dict[str, Any]) -> str:
    """``UA 52.89 ± 10.00, WA ...`` (no ± over a single value: there is no spread to show)."""

    def value(entry: dict[str, Any]) -> str:
        spread = f" ± {100 * entry['std']:.2f}" if len(entry.get("values", ())) > 1 else ""
        return f"{100 * entry['mean']:.2f}{spread}"

    return ", ".join(f"{name} {value(summary[key])}" for key, name in METRIC_NAMES)
