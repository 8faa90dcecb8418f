"""What an extraction run is asked to do and what it reports: [`RunOptions`][ser.extract.run_options.RunOptions]
(checked before anything loads), [`RunReport`][ser.extract.run_options.RunReport], and the paths and rates derived from
them (a shard's store name, the rejects table beside a store, throughput)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ser.atomic_files import write_text
from ser.extract.audio import DEFAULT_MAX_SECONDS
from ser.extract.augment import AugmentPolicy, Transform
from ser.extract.base import ExtractorError


@dataclass(kw_only=True)
class RunOptions:
    """How to run an extraction (none of these change the features, except ``seq``, ``augment``
    and ``corrupt``, which are part of the store's config)."""

    seq: str = "none"
    """Layers stored as sequences: none, last, all, numbers (6,12) or names; pooled stats are always written."""
    batch_seconds: float = 160.0
    """Most padded audio seconds in one batch (audio extractors; a fixed-window model such as Whisper
    counts its window per chunk). Text and mocap batches are limited by ``batch_items`` alone."""
    batch_items: int = 32
    """Most items in one batch."""
    num_workers: int = 2
    """Decoding/resampling worker processes (0 = decode in the main process)."""
    shard: tuple[int, int] | None = None
    """(index, count): extract only manifest rows index, index + count, ..."""
    max_total_seconds: float = DEFAULT_MAX_SECONDS
    """Audio longer than this is rejected as absurd (a whole podcast where an utterance was expected)."""
    compression: str | None = None
    """Compress the finished store (HDF5: gzip, lzf; Zarr: zstd, gzip, blosc)."""
    segment_bytes: int = 64 << 20
    """Buffered rows are flushed to disk (and safe from crashes) once they hold this many bytes ..."""
    flush_seconds: float = 30.0
    """... and at least this often in wall-clock seconds, so a killed run loses at most this much work."""
    flush_rows: int = 0
    """... and every this many rows (0: no row limit)."""
    retry_rejected: bool = False
    """Extract the rows that earlier runs rejected once more (after a transient error, e.g. on NFS)."""
    repair: bool = False
    """Extract again the rows of a finished store whose bytes fail its checksums (``ser cache verify``
    names them); the intact rows are kept."""
    progress: bool = True
    """Show a progress bar."""
    augment: AugmentPolicy | None = None
    """Waveform augmentation policy (audio extractors): every row whose class has a chain also gets
    ``copies`` augmented rows ``<id>@aug<k>`` (see [`ser.extract.augment`][ser.extract.augment]). Changes the
    features."""
    augment_splits: tuple[str, ...] = ()
    """Augment only rows of these official splits (e.g. ``("train",)``; empty: every row; ``ser fit``
    uses copies of a fold's training rows only either way)."""
    corrupt: Transform | None = None
    """Test-time corruption applied to every row (``parse_corruption("white@10dB")``). Changes the features."""

    def check(self) -> None:
        """Refuse bad values by name, one line, before anything is loaded or written."""
        for name, low in (("batch_items", 1), ("num_workers", 0), ("segment_bytes", 1), ("flush_rows", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ExtractorError(f"--{name.replace('_', '-')} must be a whole number >= {low}, not {value!r}")
        seconds_floors: tuple[tuple[str, float | None], ...] = (
            ("batch_seconds", 0.0),
            ("max_total_seconds", 0.0),
            ("flush_seconds", None),
        )
        for name, floor in seconds_floors:
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
            if bad or (value <= floor if floor is not None else value < 0):
                bound = "> 0" if floor is not None else ">= 0 (0: after every batch)"
                raise ExtractorError(f"--{name.replace('_', '-')} must be a number of seconds {bound}, not {value!r}")


@dataclass
class RunReport:
    """What a run did."""

    output: Path
    """The store written (or found finished)."""
    extracted: int = 0
    """Rows this run extracted and stored (rejected rows not counted)."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Rows of this run's manifest that are rejected in the store, with the reason."""
    resumed: int = 0
    """Rows (stored or rejected) already in the store when extraction started."""
    already_complete: bool = False
    """True when the store already held every row and nothing ran."""
    stored: int = 0
    """Rows of this run's manifest in the finished store (set when it was already complete)."""
    extended: str | None = None
    """Set when a finished store was extended: what it lacked (``2 new rows, 1 changed row``)."""
    seconds: float = 0.0
    """Wall time of the run."""
    audio_seconds: float = 0.0
    """Seconds of audio this run decoded."""
    rejects_file: Path | None = None
    """``STORE.rejects.tsv``, listing the rejected rows with the reasons (None without rejects)."""


def shard_output(output: Path, shard: tuple[int, int] | None) -> Path:
    """``feats.h5`` -> ``feats.shard2of4.h5`` for shard (2, 4); unchanged without shards."""
    if shard is None:
        return output
    index, count = shard
    return output.with_name(f"{output.stem}.shard{index}of{count}{output.suffix}")


def rejects_path(store: Path) -> Path:
    """``feats.h5`` -> ``feats.h5.rejects.tsv``."""
    return store.with_name(store.name + ".rejects.tsv")


SLURM_SHARD = "slurm"
"""``--shard slurm``: the shard of this task of a Slurm job array
(see [`slurm_array_shard`][ser.extract.run_options.slurm_array_shard])."""


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``"2/4"`` -> (2, 4), checking 0 <= i < N; ``"slurm"`` -> this Slurm array task's shard, read from
    ``environ`` (default: this process's environment)."""
    if not text:
        return None
    if text.strip().lower() == SLURM_SHARD:
        return slurm_array_shard(os.environ if environ is None else environ)
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ExtractorError(f"--shard takes i/N (e.g. 0/4) or slurm, not {text!r}") from None
    if not 0 <= index < count:
        raise ExtractorError(f"--shard {text}: i must be between 0 and N-1")
    return index, count


def slurm_array_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """(i, N) of a Slurm job array task: N = ``SLURM_ARRAY_TASK_COUNT`` and i = (``SLURM_ARRAY_TASK_ID`` -
    ``SLURM_ARRAY_TASK_MIN``) / ``SLURM_ARRAY_TASK_STEP``, so ``--array=0-3``, ``--array=1-4`` and
    ``--array=0-6:2`` all give shards 0..3 of 4. An index list with gaps (``--array=0,5,7``) is refused: its
    tasks would not cover every shard. Refused in one line outside a job array."""
    if not environ.get("SLURM_ARRAY_TASK_ID", "").strip():
        where = "a Slurm job" if environ.get("SLURM_JOB_ID") else "Slurm"
        raise ExtractorError(
            f"--shard slurm takes its shard from a Slurm job array, but this runs outside one (in {where} "
            "without SLURM_ARRAY_TASK_ID): submit it with sbatch --array=0-N-1, or give --shard i/N"
        )
    values: dict[str, int] = {}
    for name, default in (("ID", None), ("MIN", None), ("MAX", None), ("COUNT", None), ("STEP", "1")):
        key = f"SLURM_ARRAY_TASK_{name}"
        text = environ.get(key, default)
        if text is None:
            raise ExtractorError(f"--shard slurm: {key} is not set (Slurm sets it in every array task)")
        try:
            values[name] = int(text.strip())
        except ValueError:
            raise ExtractorError(f"--shard slurm: {key}={text!r} is not a whole number") from None
    task, low, high, count, step = (values[name] for name in ("ID", "MIN", "MAX", "COUNT", "STEP"))
    step = max(1, step)
    if count < 1 or (high - low) // step + 1 != count or (high - low) % step:
        raise ExtractorError(
            f"--shard slurm needs a job array without gaps (e.g. --array=0-{max(count, 1) - 1}); this one has "
            f"{count} tasks between indices {low} and {high} (step {step})"
        )
    index, off_step = divmod(task - low, step)
    if off_step or not 0 <= index < count:
        raise ExtractorError(
            f"--shard slurm: array task {task} is not one of {count} tasks from {low} to {high} in steps of {step}"
        )
    return index, count


def write_rejects(path: Path, rejected: dict[str, str], notes: dict[str, str]) -> None:
    """Write the rejects table (``id  status  reason``: rejected rows, then notes) to ``path`` atomically."""
    buffer = io.StringIO()
    table = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    table.writerow(["id", "status", "reason"])
    table.writerows([uid, "rejected", reason] for uid, reason in sorted(rejected.items()))
    table.writerows([uid, "note", text] for uid, text in sorted(notes.items()))
    write_text(path, buffer.getvalue())


def progress_rates(items: int, audio_seconds: float, elapsed: float) -> str:
    """``"12.5 utt/s, 0.0104 audio-h/s"``: utterances and audio hours per wall-clock second."""
    elapsed = max(elapsed, 1e-9)
    return f"{items / elapsed:.1f} utt/s, {audio_seconds / 3600 / elapsed:.3g} audio-h/s"


def audio_hours_per_hour(report: RunReport) -> float:
    """Throughput in audio hours per wall-clock hour (NaN when nothing was timed)."""
    return report.audio_seconds / report.seconds if report.seconds else math.nan
