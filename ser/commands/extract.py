"""``ser extract``: run an upstream model over a manifest into a feature cache store."""

from __future__ import annotations

from pathlib import Path

import typer

from ser.commands.common import parse_options, user_errors
from ser.extract.registry import EXTRACTORS  # noqa: TID253 (literal registry, no heavy imports)

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); the work so far is kept."""
EXIT_REJECTED = 3
"""Exit status when the store was finished but some utterances were rejected (see the rejects file)."""


def _families_help() -> str:
    return "; ".join(f"{name} ({', '.join(info.presets)})" for name, info in EXTRACTORS.items())


def extract(
    model: str = typer.Option(..., "--model", help=f"Extractor family. Families (presets): {_families_help()}."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest to extract (from `ser manifest`)."),
    output: Path = typer.Option(..., "--output", "-o", help="Store to write: .h5 (HDF5) or .zarr (Zarr)."),
    preset: str | None = typer.Option(None, help="Preset of the family (default: the first listed)."),
    checkpoint: str | None = typer.Option(
        None,
        help="Local model folder (save_pretrained layout) or weights file "
        "instead of the preset's hub id; needed offline.",
    ),
    seq: str = typer.Option(
        "none",
        help="Layers stored as frame/token sequences: none, last, all, numbers such as "
        "6,12, or names (layer_06, lld, logmel). Pooled statistics of ALL layers are "
        "always stored.",
    ),
    device: str = typer.Option(
        "auto",
        help="auto (cuda if available), cpu, cuda, cuda:N, mps. Under torchrun auto and cuda mean cuda:LOCAL_RANK.",
    ),
    dtype: str = typer.Option("float32", help="Compute dtype on GPU: float32, float16, bfloat16 (autocast)."),
    batch_seconds: float = typer.Option(
        160.0,
        help="Most padded audio seconds per batch (lower it on small GPUs); "
        "Whisper counts 30 s per item and chunk. Text and mocap batches are "
        "limited by --batch-items only.",
    ),
    batch_items: int = typer.Option(32, help="Most items per batch."),
    num_workers: int = typer.Option(2, help="Background processes decoding and resampling audio (0 = none)."),
    max_seconds: float | None = typer.Option(
        None, help="SSL models: cut longer audio into chunks of this many seconds and stitch the frames (default 30)."
    ),
    max_total_seconds: float = typer.Option(3 * 3600.0, help="Reject audio longer than this as absurd."),
    shard: str | None = typer.Option(
        None,
        help="i/N: extract every N-th row starting at i into "
        "OUTPUT.shard{i}of{N}.h5; join shards with `ser cache merge`. slurm: i and N of this "
        "task of a Slurm job array (sbatch --array=0-3 gives shards 0/4 to 3/4). Under torchrun "
        "each rank takes its own shard and rank 0 merges them.",
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-O",
        help="Family option KEY=VALUE (e.g. -O max_tokens=256 "
        "for text, -O pca_checkpoint=PATH for vggish, -O steps=200 for mocap).",
    ),
    compression: str | None = typer.Option(
        None,
        help="Compress the finished store (HDF5: gzip, lzf; Zarr: zstd, gzip, blosc). Default: none (fastest reads).",
    ),
    flush_seconds: float = typer.Option(
        30.0,
        help="Write the rows extracted so far to disk at least this often "
        "(seconds): a killed run loses at most this much work and resumes.",
    ),
    retry_rejected: bool = typer.Option(
        False,
        "--retry-rejected",
        help="Extract the rows earlier runs rejected "
        "once more (after a transient error such as a network file system "
        "hiccup).",
    ),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Extract again the rows of the finished store whose bytes "
        "fail its checksums (what `ser cache verify` reports as damaged); the intact rows "
        "are kept.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    augment: Path | None = typer.Option(
        None,
        "--augment",
        help="Augmentation policy YAML (per-class chains of "
        "pitch_shift, time_stretch, noise, reverb, gain): stores augmented copies "
        "<id>@aug<k> next to every row; `ser fit` trains on copies of training "
        "rows only.",
    ),
    augment_split: list[str] = typer.Option(
        [],
        "--augment-split",
        help="Augment only rows of this official split (repeatable, e.g. train); default every row.",
    ),
    corrupt: str | None = typer.Option(
        None,
        "--corrupt",
        help="Corrupt every row for a robustness test copy: "
        "white|pink|brown|blue|violet@SNRdB, NOISE_FOLDER@SNRdB or reverb@RT60s "
        "(e.g. white@10dB); pass the store to `ser fit --robustness`.",
    ),
) -> None:
    """Extract features of a manifest into a cache store.

    Resumable: run the same command again after an interruption. Re-running over a finished store
    extracts the rows it lacks (rows added to the manifest, rows whose audio, segment or text changed,
    and with --retry-rejected the rejected ones) and keeps the rest.

    Exit status: 0 all rows stored; 3 finished but some rows are rejected (listed with the reason in
    OUTPUT.rejects.tsv); 2 bad input (the message says which and how to fix it).
    """
    with user_errors():
        from ser.cache.format import check_compression
        from ser.devices import resolve_device
        from ser.errors import UserError
        from ser.extract.augment import load_policy, parse_corruption
        from ser.extract.registry import build_extractor
        from ser.extract.run_options import parse_shard, progress_rates
        from ser.extract.runner import ExtractionInterrupted, RunOptions, run_extraction
        from ser.extract.torchrun import TorchrunContext
        from ser.recipes.shards import merge_rank_shards

        # everything that can be refused is refused before the model loads
        check_compression(output, compression)
        augment_policy = load_policy(augment) if augment else None
        corruption = parse_corruption(corrupt) if corrupt else None
        ctx = TorchrunContext.from_environment()
        chosen_shard = parse_shard(shard) or ctx.shard
        RunOptions(
            seq=seq,
            batch_seconds=batch_seconds,
            batch_items=batch_items,
            num_workers=num_workers,
            max_total_seconds=max_total_seconds,
            flush_seconds=flush_seconds,
        ).check()  # before the model loads
        family_options = parse_options(option)
        if max_seconds is not None:
            if model not in ("hubert", "wav2vec2", "wavlm"):
                raise UserError(
                    f"--max-seconds cuts long audio for hubert, wav2vec2 and wavlm; {model} does not take it"
                )
            family_options["max_seconds"] = max_seconds
        if dtype not in ("float32", "float16", "bfloat16"):
            raise UserError(f"--dtype must be float32, float16 or bfloat16, not {dtype!r}")
        chosen_device = resolve_device(device)
        extractor = build_extractor(
            model, preset, checkpoint=checkpoint, device=chosen_device, dtype=dtype, **family_options
        )
        options = RunOptions(
            augment=augment_policy,
            augment_splits=tuple(augment_split),
            corrupt=corruption,
            seq=seq,
            batch_seconds=batch_seconds,
            batch_items=batch_items,
            num_workers=num_workers,
            shard=chosen_shard,
            max_total_seconds=max_total_seconds,
            compression=compression,
            flush_seconds=flush_seconds,
            retry_rejected=retry_rejected,
            repair=repair,
            progress=progress and ctx.rank == 0,
        )
        try:
            report = run_extraction(manifest, extractor, output, options)
        except ExtractionInterrupted as stopped:
            typer.secho(f"interrupted by {stopped}", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            typer.secho(
                "interrupted: the rows flushed so far are kept; run the same command again to resume",
                fg=typer.colors.YELLOW,
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        merged = merge_rank_shards(ctx, output, compression) if shard is None else None
    if report.already_complete:
        typer.echo(
            f"{report.output} is already complete (same extractor config): {report.stored} rows stored, "
            f"{len(report.rejected)} rejected; nothing to do"
        )
    else:
        if report.extended:
            typer.echo(f"{report.output}: extended the finished store ({report.extended})")
        rate = (
            f", {progress_rates(report.extracted, report.audio_seconds, report.seconds)}, "
            f"{report.audio_seconds / report.seconds:.1f}x real time"
            if report.audio_seconds and report.seconds
            else ""
        )
        typer.echo(
            f"{report.output}: {report.extracted} extracted ({report.resumed} were already done), "
            f"{len(report.rejected)} rejected, {report.seconds:.1f} s{rate}"
        )
    if merged is not None:
        report.rejected, report.rejects_file = merged.rejected, merged.rejects_file
        typer.echo(
            f"rank 0 merged the {merged.shards} shards into {merged.store}: {merged.items} items, "
            f"{len(merged.rejected)} rejected"
        )
    if report.rejected:
        retry = "" if retry_rejected else " (run again with --retry-rejected to try them once more)"
        typer.secho(
            f"{len(report.rejected)} rows rejected; reasons in {report.rejects_file}{retry}", fg=typer.colors.YELLOW
        )
        raise typer.Exit(EXIT_REJECTED)


def list_extractors() -> None:
    """List extractor families, their presets and what they load.

    One block per family: its description, then each preset with the upstream model it loads.
    """
    for family, info in EXTRACTORS.items():
        typer.echo(f"{family}: {info.description}")
        for name, upstream in info.presets.items():
            typer.echo(f"  {name:14s} {upstream}")
