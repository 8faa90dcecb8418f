"""The extraction runner: manifest rows in, a finished cache store out.

* Batches are duration-bucketed (longest first, so an out-of-memory error shows up at once): a
  batch holds at most ``batch_seconds`` of padded audio and ``batch_items`` items. Extractors that
  must not see padding only get items of identical length together; Whisper-style extractors that
  pad every input to a fixed window are planned by that window. Text and mocap batches are limited
  by ``batch_items`` only (their "duration" means nothing to a compute budget).
* Decoding and resampling run in DataLoader worker processes (``num_workers``), ahead of the model.
* Rows stream into the crash-safe :class:`~ser.cache.writer.CacheWriter`, which is flushed every
  ``flush_seconds`` (and ``segment_bytes``, ``flush_rows``): memory does not grow with the corpus,
  a killed run loses at most the last interval, and re-running the same command resumes.
* A finished store is brought up to date with its manifest (new rows, changed rows, rejected rows
  with ``retry_rejected``) instead of being taken as complete; see :mod:`ser.extract.update`.
* Bad inputs never stop the run: unreadable, empty, silent or absurdly long audio, any error while
  decoding one row, missing text, NaN features, and an item whose forward pass fails on its own
  are rejected with the reason (kept in the store and written to ``<store>.rejects.tsv``). Only a
  run of consecutive failures (a broken model or device) aborts.
* ``shard=(i, n)`` extracts rows ``i, i+n, i+2n, ...`` of the manifest into its own store.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import math
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ser.cache.format import (
    StoreLayout,
    check_compression,
    config_hash,
    partial_path,
    set_aside_path,
    source_of,
)
from ser.cache.provenance import environment, utc_now
from ser.cache.writer import CacheWriter, remove_stale_partial
from ser.extract.audio import DEFAULT_MAX_SECONDS, AudioError, load_audio
from ser.extract.augment import (
    AugmentError,
    AugmentPolicy,
    Plan,
    Transform,
    apply_chain,
    augmented_rows,
    corruption_plan,
    describe_corruption,
)
from ser.extract.base import Extractor, ExtractorError, Features, Item, ItemRejected
from ser.extract.registry import recommended_view
from ser.extract.update import (
    Pending,
    damaged_rows,
    find_pending,
    remove_store,
    seed_from_store,
    store_attrs_of,
)
from ser.manifests.audio_info import AudioInfoError, probe_duration
from ser.manifests.fingerprints import SCHEME as FINGERPRINT_SCHEME
from ser.manifests.fingerprints import row_fingerprints
from ser.manifests.schema import Manifest, Utterance, file_sha256, read_manifest
from ser.processes import StopRequest, worker_setup

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 20


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
    ``copies`` augmented rows ``<id>@aug<k>`` (see :mod:`ser.extract.augment`). Changes the features."""
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
        for name, low in (("batch_seconds", 0.0), ("max_total_seconds", 0.0), ("flush_seconds", None)):
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
            if bad or (value <= low if low is not None else value < 0):
                bound = "> 0" if low is not None else ">= 0 (0: after every batch)"
                raise ExtractorError(f"--{name.replace('_', '-')} must be a number of seconds {bound}, not {value!r}")


@dataclass
class RunReport:
    """What a run did."""

    output: Path
    extracted: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    """Rows of this run's manifest that are rejected in the store, with the reason."""
    resumed: int = 0
    """Rows (stored or rejected) already in the store when extraction started."""
    already_complete: bool = False
    stored: int = 0
    """Rows of this run's manifest in the finished store (set when it was already complete)."""
    extended: str | None = None
    """Set when a finished store was extended: what it lacked (``2 new rows, 1 changed row``)."""
    seconds: float = 0.0
    audio_seconds: float = 0.0
    rejects_file: Path | None = None


def shard_output(output: Path, shard: tuple[int, int] | None) -> Path:
    """``feats.h5`` -> ``feats.shard2of4.h5`` for shard (2, 4); unchanged without shards."""
    if shard is None:
        return output
    index, count = shard
    return output.with_name(f"{output.stem}.shard{index}of{count}{output.suffix}")


def rejects_path(store: Path) -> Path:
    """``feats.h5`` -> ``feats.h5.rejects.tsv``."""
    return store.with_name(store.name + ".rejects.tsv")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> (2, 4), checking 0 <= i < N."""
    if not text:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ExtractorError(f"--shard takes i/N (e.g. 0/4), not {text!r}") from None
    if not 0 <= index < count:
        raise ExtractorError(f"--shard {text}: i must be between 0 and N-1")
    return index, count


# ------------------------------------------------------------------------------------------ batching


def plan_batches(
    rows: Sequence[Utterance],
    durations: Sequence[float],
    *,
    batch_seconds: float,
    batch_items: int,
    same_length_only: bool,
    window_seconds: float | None = None,
) -> list[list[int]]:
    """Indices of ``rows`` grouped into batches, longest first.

    A batch's cost is its padded size: ``len(batch) * longest``. With ``window_seconds`` every item
    is padded to whole windows by the model itself (Whisper: 30 s), so an item costs
    ``ceil(duration / window) * window`` and a batch the sum of its items' costs. With
    ``same_length_only`` a batch holds items of identical duration only. ``batch_seconds`` may be
    ``math.inf`` (batches limited by ``batch_items`` only).
    """
    order = sorted(range(len(rows)), key=lambda i: (-durations[i], rows[i].id))
    batches: list[list[int]] = []
    current: list[int] = []
    spent = 0.0
    for index in order:
        cost = window_cost(durations[index], window_seconds) if window_seconds else 0.0
        if current:
            if window_seconds:
                fits = spent + cost <= batch_seconds
            else:
                fits = (len(current) + 1) * durations[current[0]] <= batch_seconds
            fits = fits and len(current) < batch_items
            if same_length_only and durations[index] != durations[current[0]]:
                fits = False
            if not fits:
                batches.append(current)
                current, spent = [], 0.0
        current.append(index)
        spent += cost
    if current:
        batches.append(current)
    return batches


def window_cost(seconds: float, window: float) -> float:
    """Seconds of model input for ``seconds`` of audio cut into ``window``-second padded chunks (at least one)."""
    return max(1, math.ceil(seconds / window - 1e-9)) * window


@dataclass
class Decoded:
    """One manifest row as it comes back from a decoding worker: exactly one of item, result, error is set."""

    id: str
    seconds: float = 0.0
    """Duration of the decoded audio (0 for text and mocap rows)."""
    item: Item | None = None
    """The decoded item, for extraction in the main process."""
    result: Features | ItemRejected | None = None
    """Features computed in the worker (``in_workers`` extractors: the audio is not shipped back)."""
    error: str | None = None
    """Why the row could not be decoded."""


class _BatchDataset(Dataset):
    """Decodes one planned batch per index (runs in DataLoader workers).

    With ``extractor`` set (extractors whose spec says ``in_workers``) the features are computed
    here too, and only the features and durations go back to the main process.
    """

    def __init__(
        self,
        manifest: Manifest,
        rows: Sequence[Utterance],
        batches: list[list[int]],
        extractor_modality: str,
        sample_rate: int | None,
        max_total_seconds: float,
        extractor: Extractor | None = None,
        seq_layers: Sequence[str] = (),
        plan: Plan | None = None,
    ) -> None:
        self.extractor = extractor
        self.plan = plan or {}
        self.seq_layers = tuple(seq_layers)
        self.root = str(manifest.root)
        self.paths = [str(manifest.audio_path(u)) if u.audio else None for u in rows]
        self.rows = rows
        self.batches = batches
        self.modality = extractor_modality
        self.sample_rate = sample_rate
        self.max_total_seconds = max_total_seconds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[Decoded]:
        decoded = [self._decode(row_index) for row_index in self.batches[index]]
        if self.extractor is None:
            return decoded
        ready = [entry for entry in decoded if entry.item is not None]
        items = [entry.item for entry in ready if entry.item is not None]
        results = _extract_batch(self.extractor, items, self.seq_layers) if items else []
        for entry, result in zip(ready, results, strict=True):
            entry.result, entry.item = result, None
        return decoded

    def _decode(self, row_index: int) -> Decoded:
        row = self.rows[row_index]
        if self.modality != "audio":
            return Decoded(row.id, item=Item(id=row.id, text=row.text, extra={**row.extra, "root": self.root}))
        path = self.paths[row_index]
        if path is None:
            return Decoded(row.id, error="the manifest row has no audio")
        rate = self.sample_rate or 16000
        try:
            audio = load_audio(path, sample_rate=rate, start=row.start, end=row.end, max_seconds=self.max_total_seconds)
        except AudioError as err:
            return Decoded(row.id, error=str(err))
        except Exception as err:  # never let one row kill the run (a decoder bug, an OS error, ...)
            return Decoded(row.id, error=f"decoding failed: {type(err).__name__}: {err}")
        if row.id in self.plan:
            transforms, seed = self.plan[row.id]
            try:
                audio = apply_chain(transforms, audio, rate, seed)
            except Exception as err:  # a transform that fails on one clip rejects that row only
                return Decoded(row.id, error=f"augmentation failed: {type(err).__name__}: {err}")
        return Decoded(
            row.id,
            seconds=audio.size / rate,
            item=Item(id=row.id, audio=audio, text=row.text, extra={**row.extra, "root": self.root}),
        )


def _durations(manifest: Manifest, rows: Sequence[Utterance], modality: str) -> list[float]:
    """Duration of each row, from the manifest or (when missing) the audio header; rows of text and
    mocap extractors without a duration use their text length (for ordering only)."""
    durations = []
    for row in rows:
        if row.duration is not None:
            durations.append(float(row.duration))
        elif row.audio is not None and row.start is not None and row.end is not None:
            durations.append(row.end - row.start)
        elif row.audio is not None and modality == "audio":
            try:
                durations.append(probe_duration(manifest.audio_path(row)))  # type: ignore[arg-type]
            except AudioInfoError:
                durations.append(0.0)  # decoding will reject it with the precise reason
        else:
            durations.append(float(len(row.text or "")))
    return durations


# ------------------------------------------------------------------------------------------ running


def store_attrs(
    extractor: Extractor,
    seq_layers: Sequence[str],
    manifest: Manifest,
    shard: tuple[int, int] | None,
    options: RunOptions | None = None,
) -> tuple[StoreLayout, dict[str, Any]]:
    """The layout and provenance attributes of the store an extraction writes."""
    spec = extractor.spec
    config = {**extractor.config(), "seq_layers": list(seq_layers)}
    waveform: dict[str, Any] = {}  # keys only when set, so plain stores keep their config hash
    if options is not None and options.augment is not None:
        waveform["augment"] = {**options.augment.to_dict(), "splits": list(options.augment_splits)}
    if options is not None and options.corrupt is not None:
        waveform["corrupt"] = {"kind": options.corrupt.kind, "params": options.corrupt.params}
    config.update(waveform)
    layout = StoreLayout(pooled=dict(spec.pooled), seq={layer: spec.seq_layers[layer] for layer in seq_layers})
    attrs = {
        "extractor": {
            "name": spec.name,
            "preset": spec.preset,
            "modality": spec.modality,
            "config": config,
            "config_hash": config_hash(config),
            "shard": list(shard) if shard else None,
            "recommended_view": recommended_view(spec.name, spec.pooled),
        },
        "upstream": extractor.upstream(),
        "manifest": {
            "path": str(manifest.path.resolve()) if manifest.path else None,
            "sha256": file_sha256(manifest.path) if manifest.path else None,
            "n_items": len(manifest),
            "corpus": manifest.header.corpus,
        },
        "environment": environment(),
        "created": utc_now(),
    }
    if options is not None and options.corrupt is not None:
        attrs["corruption"] = describe_corruption(options.corrupt)
    if "augment" in waveform:
        attrs["augmentation"] = waveform["augment"]
    return layout, attrs


def _extract_batch(extractor: Extractor, items: list[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
    """Run a batch; if it fails as a whole, retry item by item so one bad item cannot sink the rest."""
    try:
        return extractor.extract(items, seq_layers)
    except (RuntimeError, ValueError, ExtractorError) as batch_error:
        if len(items) == 1:
            return [ItemRejected(f"extraction failed: {type(batch_error).__name__}: {batch_error}")]
        logger.warning("batch of %d failed (%s); retrying one by one", len(items), batch_error)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [result for item in items for result in _extract_batch(extractor, [item], seq_layers)]


def write_rejects(path: Path, rejected: dict[str, str], notes: dict[str, str]) -> None:
    buffer = io.StringIO()
    table = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    table.writerow(["id", "status", "reason"])
    table.writerows([uid, "rejected", reason] for uid, reason in sorted(rejected.items()))
    table.writerows([uid, "note", text] for uid, text in sorted(notes.items()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def progress_rates(items: int, audio_seconds: float, elapsed: float) -> str:
    """``"12.5 utt/s, 0.0104 audio-h/s"``: utterances and audio hours per wall-clock second."""
    elapsed = max(elapsed, 1e-9)
    return f"{items / elapsed:.1f} utt/s, {audio_seconds / 3600 / elapsed:.3g} audio-h/s"


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # the rates are whole-run averages in the postfix (progress_rates), not tqdm's smoothed items/s
    return tqdm(
        total=total,
        unit="utt",
        disable=not enabled,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} utt [{elapsed}<{remaining}{postfix}]",
    )


def run_extraction(
    manifest_path: str | os.PathLike[str],
    extractor: Extractor,
    output: str | os.PathLike[str],
    options: RunOptions | None = None,
) -> RunReport:
    """Extract every (remaining) row of a manifest into ``output``; see the module docstring."""
    options = options or RunOptions()
    options.check()
    check_compression(Path(output), options.compression)  # refused now, not after hours of extraction
    manifest = read_manifest(manifest_path)
    if not manifest.utterances:
        raise ExtractorError(
            f"{manifest_path}: the manifest holds no rows; rebuild it with `ser manifest CORPUS ROOT "
            "-o FILE` and check that ROOT is the corpus folder"
        )
    rows = [
        u
        for i, u in enumerate(manifest.utterances)
        if options.shard is None or i % options.shard[1] == options.shard[0]
    ]
    rows, plan = _waveform_plan(manifest, rows, extractor, options)
    retry = {u.id for u in rows} if options.retry_rejected else set()
    return _run(manifest, rows, extractor, Path(output), options, retry, plan)


def _waveform_plan(
    manifest: Manifest, rows: list[Utterance], extractor: Extractor, options: RunOptions
) -> tuple[list[Utterance], Plan]:
    """The rows to extract (augmented copies appended) and which of them are transformed, how."""
    if options.augment is None and options.corrupt is None:
        return rows, {}
    if extractor.spec.modality != "audio":
        raise AugmentError(
            f"--augment and --corrupt transform audio; {extractor.spec.name} reads {extractor.spec.modality}"
        )
    if options.augment is not None and options.corrupt is not None:
        raise AugmentError("--augment makes training copies and --corrupt evaluation copies: use one per store")
    if options.corrupt is not None:
        return rows, corruption_plan(rows, options.corrupt)
    from ser.manifests.labels import choose_label_set

    assert options.augment is not None
    label_set = choose_label_set(manifest, options.augment.label_set).label_set
    class_of = label_set.class_of if label_set is not None else (lambda row: row.label)
    extra, plan = augmented_rows(rows, options.augment, class_of, splits=options.augment_splits)
    logger.info("augmentation: %d extra rows from %d source rows", len(extra), len(rows))
    return rows + extra, plan


def _run(
    manifest: Manifest,
    rows: list[Utterance],
    extractor: Extractor,
    output: Path,
    options: RunOptions,
    retry: Collection[str],
    plan: Plan,
) -> RunReport:
    """One pass: finish or extend the store of ``rows``; rejected ids in ``retry`` are tried again."""
    seq_layers = extractor.spec.resolve_seq(options.seq)
    out = shard_output(output, options.shard)
    report = RunReport(output=out, rejects_file=rejects_path(out))
    layout, attrs = store_attrs(extractor, seq_layers, manifest, options.shard, options)
    scheme = _fingerprint_scheme(out, output, aside=set_aside_path(out))
    if scheme is not None:
        attrs["fingerprint_scheme"] = scheme
    expected = row_fingerprints(manifest, rows, modality=extractor.spec.modality, scheme=scheme)
    aside = set_aside_path(out)
    if aside.exists() and out.exists():
        raise ExtractorError(
            f"{aside} is left over from an interrupted extension of {out}, but {out} exists "
            f"too; delete {aside} if {out} is the store to keep, then run again"
        )
    if aside.exists():
        report.extended = "an interrupted extension, resumed"
    else:
        merged = output  # a shard's work is also done when the merged store already exists
        finished = next((path for path in dict.fromkeys([out, merged]) if path.exists()), None)
        if finished is not None:
            _check_complete_store(finished, attrs)
            remove_stale_partial(finished)
            redo = damaged_rows(finished) if options.repair else set()
            pending = find_pending(finished, expected, retry=retry, redo=redo)
            if pending.nothing_to_do:
                return _already_complete(report, finished, pending)
            if finished != out:
                raise ExtractorError(
                    f"{finished} (merged from shards) lacks {pending.describe()} of shard "
                    f"{options.shard[0] if options.shard else 0}; a merged store cannot be extended "
                    "shard by shard. Run the same `ser extract` without --shard or torchrun (one "
                    "process) to extend it, or delete it and extract the shards again"
                )
            logger.info("%s: extending the finished store (%s)", out, pending.describe())
            report.extended = pending.describe()
            try:
                os.replace(out, aside)
            except FileNotFoundError:  # another run moved it aside a moment ago
                raise ExtractorError(
                    f"another `ser extract` started extending {out} at the same moment (it moved the "
                    f"store to {aside.name}); wait for it to finish, then run again if rows are "
                    "still missing"
                ) from None
    if aside.exists():
        previous = store_attrs_of(aside)
        attrs = {
            **attrs,
            "extended_from": {
                key: previous.get(key) for key in ("manifest", "created", "finalized", "n_items", "extended_from")
            },
        }
    earlier = _extract_into(
        manifest,
        rows,
        extractor,
        out,
        layout,
        attrs,
        seq_layers,
        options,
        report,
        aside=aside if aside.exists() else None,
        retry=retry,
        expected=expected,
        plan=plan,
    )
    if earlier:  # rejects of the resumed partial store, tried again now that it is finished
        again = _run(manifest, rows, extractor, output, options, earlier, plan)
        again.extracted += report.extracted
        again.seconds += report.seconds
        again.audio_seconds += report.audio_seconds
        again.resumed = report.resumed
        return again
    return report


def _fingerprint_scheme(out: Path, merged: Path, *, aside: Path) -> str | None:
    """The fingerprint scheme of the store this run continues (a partial, set-aside or finished store keeps
    the scheme it was started with, so an older store is not re-extracted for a new scheme); new stores
    get the current one."""
    partial_meta = partial_path(out) / "meta.json"
    if partial_meta.is_file():
        try:
            attrs = json.loads(partial_meta.read_text(encoding="utf-8")).get("attrs") or {}
        except (OSError, ValueError, AttributeError):
            return FINGERPRINT_SCHEME  # a damaged partial store is refused, naming the file, when it is opened
        return attrs.get("fingerprint_scheme")
    for existing in (aside, out, merged):
        if existing.exists():
            return store_attrs_of(existing).get("fingerprint_scheme")
    return FINGERPRINT_SCHEME


def _already_complete(report: RunReport, finished: Path, pending: Pending) -> RunReport:
    report.output, report.already_complete = finished, True
    report.rejected, report.stored = dict(pending.rejected), pending.stored
    report.rejects_file = rejects_path(finished)
    if report.rejected and not report.rejects_file.exists():
        from ser.cache.reader import CacheReader

        with CacheReader(finished) as reader:
            write_rejects(report.rejects_file, reader.rejected, reader.notes)
    return report


def _extract_into(
    manifest: Manifest,
    rows: list[Utterance],
    extractor: Extractor,
    out: Path,
    layout: StoreLayout,
    attrs: dict[str, Any],
    seq_layers: Sequence[str],
    options: RunOptions,
    report: RunReport,
    *,
    aside: Path | None,
    retry: Collection[str],
    expected: dict[str, str],
    plan: Plan,
) -> set[str]:
    """Open (or resume) the partial store, seed it from ``aside`` if given, extract the rest, finalize.

    Returns the rejected ids of a resumed partial store that are in ``retry`` (to be tried again
    once this store is finished); empty otherwise.
    """
    spec = extractor.spec
    start_time = time.perf_counter()
    earlier: set[str] = set()
    with CacheWriter.open(out, layout=layout, attrs=attrs, segment_bytes=options.segment_bytes) as writer:
        if aside is not None:
            seed_from_store(writer, aside, expected, retry=retry, redo=damaged_rows(aside) if options.repair else ())
            writer.flush()
            remove_store(aside)
        elif retry:
            earlier = {uid for uid in writer.rejected if uid in retry}
        done = writer.done_ids
        report.resumed = len(done)
        todo = [u for u in rows if u.id not in done]
        batches = plan_batches(
            todo,
            _durations(manifest, todo, spec.modality),
            batch_seconds=options.batch_seconds if spec.modality == "audio" else math.inf,
            batch_items=options.batch_items,
            same_length_only=spec.modality == "audio" and not spec.supports_padding,
            window_seconds=spec.window_seconds if spec.modality == "audio" else None,
        )
        in_workers = spec.in_workers and options.num_workers > 0
        dataset = _BatchDataset(
            manifest,
            todo,
            batches,
            spec.modality,
            spec.sample_rate,
            options.max_total_seconds,
            extractor=extractor if in_workers else None,
            seq_layers=seq_layers,
            plan=plan,
        )
        loader = DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=options.num_workers,
            prefetch_factor=2 if options.num_workers else None,
            persistent_workers=False,
            worker_init_fn=functools.partial(worker_setup, os.getpid()),
        )
        sink = _Sink(writer, report, extractor, seq_layers, {u.id: expected[u.id] for u in todo})
        flushed_at, unflushed, seen = time.monotonic(), 0, 0
        with (
            _progress(len(todo), options.progress) as bar,
            StopRequest("extraction") as stop,
            _worker_deaths(writer, options.num_workers),
        ):
            for decoded in loader:
                if stop.requested:  # between batches: the rows so far are flushed on the way out
                    del decoded
                    raise _interrupted(writer, stop.requested)
                count = sink.take(decoded)
                del decoded  # the batch's audio and features must not outlive it (flat memory)
                seen += count
                unflushed += count
                now = time.monotonic()
                if now - flushed_at >= options.flush_seconds or 0 < options.flush_rows <= unflushed:
                    writer.flush()
                    flushed_at, unflushed = now, 0
                bar.update(count)
                bar.set_postfix_str(
                    progress_rates(seen, report.audio_seconds, time.perf_counter() - start_time), refresh=False
                )
                if stop.requested:
                    raise _interrupted(writer, stop.requested)
        sink.close()
        report.rejected = {uid: reason for uid, reason in writer.rejected.items() if uid in expected}
        rejected_all = dict(writer.rejected)
        notes = dict(writer.notes)
        writer.finalize(
            compression=options.compression,
            links={u.id: source for u in rows if (source := source_of(u.id)) is not None},
        )
    report.seconds = time.perf_counter() - start_time
    if report.rejects_file is not None:
        write_rejects(report.rejects_file, rejected_all, notes)
    return earlier


@contextlib.contextmanager
def _worker_deaths(writer: CacheWriter, workers: int) -> Iterator[None]:
    """A decoding worker that died (killed by the out-of-memory killer, most often) becomes one line."""
    try:
        yield
    except RuntimeError as err:
        if "DataLoader worker" not in str(err):
            raise
        writer.flush()
        raise ExtractorError(
            f"a decoding worker process died ({str(err).splitlines()[0]}); usually the "
            f"out-of-memory killer: lower --num-workers (now {workers}) or --batch-seconds. The "
            f"{len(writer.done_ids)} rows done are kept in {writer.partial}; run again to resume"
        ) from None


class ExtractionInterrupted(Exception):  # noqa: N818 (a stop the user asked for, not a failure)
    """SIGINT / SIGTERM stopped an extraction between batches; everything extracted is kept."""


def _interrupted(writer: CacheWriter, signal_name: str) -> ExtractionInterrupted:
    writer.flush()
    return ExtractionInterrupted(
        f"{signal_name}: extraction stopped; {len(writer.done_ids)} rows are kept in "
        f"{writer.partial}. Run the same command again to resume"
    )


class _Sink:
    """Takes decoded batches: extracts what still needs it, writes rows and rejections, counts them."""

    def __init__(
        self,
        writer: CacheWriter,
        report: RunReport,
        extractor: Extractor,
        seq_layers: Sequence[str],
        fingerprints: dict[str, str],
    ) -> None:
        self.writer = writer
        self.report = report
        self.extractor = extractor
        self.seq_layers = seq_layers
        self.fingerprints = fingerprints
        # Forward failures are only recorded once a later item succeeds: a streak that ends the run
        # (broken model or device) must not leave healthy items rejected for good.
        self.failed: dict[str, str] = {}

    def take(self, decoded: list[Decoded]) -> int:
        """Handle one batch; returns its number of rows."""
        writer = self.writer
        for entry in decoded:
            if entry.error is not None:
                writer.reject(entry.id, entry.error)
        waiting = [entry for entry in decoded if entry.item is not None]
        items = [entry.item for entry in waiting if entry.item is not None]
        computed = _extract_batch(self.extractor, items, self.seq_layers) if items else []
        for entry, result in zip(waiting, computed, strict=True):
            entry.result = result
        for entry in decoded:
            result = entry.result
            if result is None:
                continue
            if isinstance(result, ItemRejected):
                if str(result).startswith("extraction failed"):
                    self.failed[entry.id] = str(result)
                else:
                    writer.reject(entry.id, str(result))
                continue
            self._reject_failed()
            if writer.add(entry.id, self.fingerprints[entry.id], result.pooled, result.seq, note=result.note):
                self.report.extracted += 1
                self.report.audio_seconds += entry.seconds
        if len(self.failed) >= MAX_CONSECUTIVE_FAILURES:
            raise ExtractorError(
                f"{len(self.failed)} items failed in a row (last: {list(self.failed.values())[-1]}); "
                f"stopping. Rows written so far are kept in {writer.partial} and the run "
                "resumes from there (the failed items will be tried again)"
            )
        return len(decoded)

    def _reject_failed(self) -> None:
        for uid, reason in self.failed.items():
            self.writer.reject(uid, reason)
        self.failed.clear()

    def close(self) -> None:
        """At the end of the rows: failures still pending are rejections."""
        self._reject_failed()


def _check_complete_store(out: Path, attrs: dict[str, Any]) -> None:
    from ser.cache.reader import CacheReader

    with CacheReader(out) as reader:
        existing = reader.attrs.get("extractor", {}).get("config_hash")
    if existing != attrs["extractor"]["config_hash"]:
        raise ExtractorError(
            f"{out} already exists with another extractor config (hash {existing}, now "
            f"{attrs['extractor']['config_hash']}); write to another path or delete it"
        )


def audio_hours_per_hour(report: RunReport) -> float:
    """Throughput in audio hours per wall-clock hour (NaN when nothing was timed)."""
    return report.audio_seconds / report.seconds if report.seconds else math.nan
