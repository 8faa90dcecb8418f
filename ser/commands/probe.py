"""``ser probe``: a layer sweep of one multi-layer store (one probe per layer plus the learned mix)."""

from __future__ import annotations

from pathlib import Path

import typer

from ser.commands.common import choices_help, default_of, user_errors
from ser.commands.fit import FOLDS_OPTION, LABEL_SET_OPTION, SEEDS_OPTION, build_fit_config, fit_progress, split_list
from ser.fusion.config import ENGINES, FitConfig  # noqa: TID253 (torch-free config, no heavy imports)
from ser.manifests.protocols import PROTOCOLS

STORE_HELP = (
    "STORE or STORE:stat=NAME: every pooled layer of the store is probed (the statistic named, else the "
    "store's recommended one)."
)


def probe(
    fusion: str | None = typer.Option(
        None,
        "--fusion",
        "-f",
        help="A pooled head: logreg, svm, mlp, ... (`ser fusion list`); sequence heads are refused. "
        "Neural heads also learn the layer=weighted mix.",
    ),
    manifest: Path | None = typer.Option(None, "--manifest", "-m", help="Manifest the store was extracted from."),
    protocol: str | None = typer.Option(
        None, "--protocol", "-p", help=f"Protocol preset: {choices_help(PROTOCOLS)} (`ser protocol list`)."
    ),
    audio: str | None = typer.Option(None, "--audio", help=f"Audio store to sweep: {STORE_HELP}"),
    text: str | None = typer.Option(None, "--text", help=f"Text store to sweep: {STORE_HELP}"),
    layers: str | None = typer.Option(
        None, "--layers", help="Layers to probe, e.g. 0,3,6 (default: every layer of the store)."
    ),
    weighted: bool = typer.Option(
        True,
        "--weighted/--no-weighted",
        help="Also fit the learned softmax layer mix (layer=weighted) and plot its weights (neural heads only; "
        "classic heads cannot learn it and leave it out).",
    ),
    label_set: str | None = LABEL_SET_OPTION,
    folds: str | None = FOLDS_OPTION,
    seeds: str | None = SEEDS_OPTION,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML file with FitConfig keys (as for `ser fit`); its input store is swept.",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override KEY=VALUE as for `ser fit` (train.lr=1e-4, protocol_options.test_split=...)."
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help=f"{choices_help(ENGINES)}; sets train.engine. stacked: every probe's members (layers x folds x "
        "seeds) train as one model with a member axis; sequential: one after the other (same numbers "
        "without dropout).",
    ),
    models: bool = typer.Option(
        False,
        "--models/--no-models",
        help="Save every probe's member weights in its run directory's models/ (off by default: a sweep "
        "writes a run per layer; the numbers and directory names do not change).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help=f"Parent folder of the probes' run directories and of the probe-... summary folder "
        f"(default {default_of(FitConfig, 'out')}/).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr; the table still prints."),
) -> None:
    """Probe each layer of a store: which one carries emotion?

    Fits the head on each layer's pooled view (STORE:stat=S,layer=N) and on the learned layer mix
    (layer=weighted), for every fold and seed, as ONE fit: members of equal shapes train stacked. Each probe
    writes the run directory `ser fit` would write for its view (same numbers). Then writes, in
    OUT/probe-<store>-<stat>-<head>-<protocol>-<hash>/, probe.csv and probe.md (per layer: UA mean ± std,
    its 95 % bootstrap interval, pooled UA, WA, and the paired comparison with the best layer), probe.png
    (UA against layer with the interval band, the mix as a line) and layer_weights.png (the learned weights,
    mean ± std over folds and seeds).

    A command rather than a `ser ablate` grid: it reads the store's layer count and expands the layers
    itself, refuses one-layer stores, and writes the layer table and layer plots a hand-written grid would not.
    """
    with user_errors():
        flags = {
            "fusion": fusion,
            "manifest": str(manifest) if manifest else None,
            "protocol": protocol,
            "audio": audio,
            "text": text,
            "label_set": label_set,
            "folds": split_list(folds, list[str], "--folds"),
            "seeds": split_list(seeds, list[int], "--seeds"),
            "out": str(out) if out else None,
            "save_models": models,
        }
        base = build_fit_config(config, flags, engine, set_)
        chosen = split_list(layers, list[int], "--layers")
        with fit_progress(quiet, f"ser probe: {base.fusion}, reading the store's layers"):
            from ser.probe.summary import write_summary  # torch: imported after the first line is out
            from ser.probe.sweep import build_sweep, run_sweep

            sweep = build_sweep(base, chosen, weighted)
            if not quiet:
                typer.echo(
                    f"ser probe: {len(sweep.probes)} probes of {sweep.store.name} ({sweep.stat}, "
                    f"{sweep.n_layers} layers): {', '.join(p.layer for p in sweep.probes)}",
                    err=True,
                )
            run_dirs = run_sweep(sweep)
        summary = write_summary(sweep, run_dirs, Path(base.out))
    typer.echo(summary.markdown, nl=False)
    for path in summary.files:
        typer.echo(f"wrote {path}")
