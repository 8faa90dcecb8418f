"""``ser cache``: inspect, verify and merge feature cache stores."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ser.cache.format import COMPRESSIONS  # noqa: TID253 (a literal, no heavy imports)
from ser.commands.common import user_errors

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Inspect, verify and merge feature cache stores.\n\n"
        "A store is an .h5 file or a .zarr folder written by `ser extract`.\n\n"
        "Example: ser cache info hubert.h5"
    ),
)


def _compact(value: object) -> object:
    """Long lists (e.g. 88 feature names) shown as a count; ``--json`` prints them in full."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) > 8:
        return f"[{len(value)} items]"
    return value


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


@app.command("info")
def info(
    store: Path = typer.Argument(..., help="Cache store (.h5 or .zarr), finished or partial."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON."),
) -> None:
    """Show a store's status, contents and provenance.

    Status (complete or partial), items, rejected ids, layers and dims, bytes on disk, the recommended
    view, and the provenance of the features (extractor, upstream, manifest, environment).
    """
    with user_errors():
        from ser.cache.format import set_aside_path
        from ser.cache.reader import CacheReader
        from ser.cache.writer import partial_summary

        partial = partial_summary(store)
        if not store.exists() and partial is not None:
            if as_json:
                typer.echo(json.dumps({"status": "partial", **partial}, indent=1, default=str))
                return
            aside = set_aside_path(store)
            if aside.exists():  # an extension: the finished rows wait aside, the new ones are in the partial folder
                with CacheReader(aside) as previous:
                    partial["set_aside"] = {
                        "path": str(aside),
                        "rows": len(previous),
                        "rejected": len(previous.rejected),
                    }
            if as_json:
                typer.echo(json.dumps({"status": "partial", **partial}, indent=1, default=str))
                return
            typer.echo(
                f"{store}: partial ({partial['rows']} rows, {partial['rejected']} rejected, "
                f"{partial['segments']} segments in {partial['partial']})"
            )
            if "set_aside" in partial:
                typer.echo(
                    f"being extended: the finished store's {partial['set_aside']['rows']} rows wait in "
                    f"{aside} (its rows are copied into the partial folder first)"
                )
            typer.echo("resume by running the same `ser extract` command again")
            return
        with CacheReader(store) as reader:
            stored = reader._file().nbytes_stored()
            summary = {
                "status": "complete",
                "items": len(reader),
                "rejected": len(reader.rejected),
                "pooled": {k: {"layers": v[0], "dim": v[1]} for k, v in reader.layout.pooled.items()},
                "seq": {"layers": reader.layout.seq, "frames": int(reader.offsets[-1])},
                "dtypes": {"pooled": reader.layout.pooled_dtype, "seq": reader.layout.seq_dtype},
                "bytes": stored,
                **{k: v for k, v in reader.attrs.items() if k not in ("layout",)},
            }
    if as_json:
        typer.echo(json.dumps(summary, indent=1, default=str))
        return
    typer.echo(
        f"{store}: complete, {summary['items']} items, {summary['rejected']} rejected, {_human_bytes(stored)} on disk"
    )
    for stat, shape in summary["pooled"].items():
        typer.echo(f"  pooled/{stat}: {shape['layers']} layers x {shape['dim']} ({summary['dtypes']['pooled']})")
    for layer, dim in summary["seq"]["layers"].items():
        typer.echo(f"  seq/{layer}: {summary['seq']['frames']} frames x {dim} ({summary['dtypes']['seq']})")
    recommended = (summary.get("extractor") or {}).get("recommended_view")
    typer.echo(
        f"  recommended view: {store.name}:{recommended} (what `ser fit` reads when an input names no view)"
        if recommended
        else "  recommended view: none recorded (an older store): an input without a view "
        "reads the first statistic of the last layer"
    )
    for key in ("extractor", "upstream", "manifest", "environment", "merged_from", "finalized"):
        if key in summary:
            typer.echo(f"  {key}: {json.dumps(_compact(summary[key]), default=str)}")


@app.command("verify")
def verify(
    store: Path = typer.Argument(..., help="Cache store to check."),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        "-m",
        help=(
            "Also check that every manifest id is stored or listed as rejected, and that no manifest "
            "row (audio, segment, text) changed since extraction. A manifest that differs from the one "
            "used at extraction (other sha256) is reported and checked row by row: labels and splits may "
            "change without re-extraction."
        ),
    ),
) -> None:
    """Check a store's values, offsets and manifest coverage.

    Checks every value (no NaN/Inf), monotone offsets and, with --manifest, the coverage of a manifest.
    Exit status 1 on problems.
    """
    with user_errors():
        from ser.cache.verify import verify_store
        from ser.extract.update import expected_fingerprints
        from ser.manifests.schema import file_sha256, read_manifest

        expected = sha256 = None
        if manifest is not None:
            expected = expected_fingerprints(store, read_manifest(manifest))
            sha256 = file_sha256(manifest)
        report = verify_store(store, expected, manifest_sha256=sha256, manifest_name=str(manifest))
    typer.echo(f"{store}: {report.n_items} items, {report.n_rejected} rejected; checked {', '.join(report.checked)}")
    for note in report.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW)
    for problem in report.problems:
        typer.secho(f"problem: {problem}", fg=typer.colors.RED, err=True)
    if not report.ok:
        raise typer.Exit(1)
    typer.secho("ok", fg=typer.colors.GREEN)


@app.command("merge")
def merge(
    shards: list[Path] = typer.Argument(
        ...,
        help="Finished stores to join: the shards of one `ser extract --shard` run, or (with --manifest) one "
        "store per corpus.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Merged store to write (.h5 or .zarr)."),
    compression: str | None = typer.Option(
        None,
        help="Compress the merged arrays ("
        + "; ".join(f"{backend}: {', '.join(codecs)}" for backend, codecs in COMPRESSIONS.items())
        + ").",
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        "-m",
        help=(
            "A manifest joining several corpora (`ser manifest join`). The stores may then come from different "
            "manifests (one per corpus): their extractor settings must match (refused naming each differing "
            "key), every stored row must be a row of this manifest with the same audio file content and "
            "segment, and ids must be disjoint. The merged store is tied to this manifest, so `ser fit -m "
            "JOINED --audio MERGED` reads it."
        ),
    ),
) -> None:
    """Join shard stores, or per-corpus stores over a joined manifest.

    Every store must pass its checksums, share the extractor config and layout, and hold disjoint ids.
    Without --manifest they must also share the manifest they were extracted from.
    """
    with user_errors():
        if manifest is None:
            from ser.cache.merge import merge_stores

            out = merge_stores(shards, output, compression=compression)
            typer.echo(f"merged {len(shards)} shards into {out}")
            return
        from ser.extract.merge_joined import merge_over_manifest

        out = merge_over_manifest(shards, output, manifest, compression=compression)
    typer.echo(f"merged {len(shards)} stores into {out} over {manifest}")
